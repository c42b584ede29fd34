"""A routed table's settings are checked as a whole: exclusions, cache keys and derived names."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from syncer.config import parse_config
from syncer.core.plan import document_body
from syncer.core.versions import Version
from syncer.errors import ConfigError

RAW: dict[str, Any] = {
    "tables": [
        {
            "name": "accounts",
            "routes": [
                {"match": {"attribute": "kind", "equals": "user"}, "index": "users"},
                {
                    "match": {"attribute": "sk", "begins_with": "ORDER#"},
                    "index": "orders",
                    "cache_keys": ["order:{pk}:{sk}", "customer:{customer}"],
                    "exclude_attributes": ["card"],
                },
            ],
        }
    ]
}
ORDER = {"pk": "C1", "sk": "ORDER#7", "customer": "c1", "card": "4111", "secret": "s3"}


def _raw() -> dict[str, Any]:
    return copy.deepcopy(RAW)


def _refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})
    return str(caught.value)


# -- B1: a route's cache keys may not use what the route excludes ----------------------------


@pytest.mark.parametrize("key", ["cache_keys", "search_cache_keys"])
def test_route_cache_key_on_an_attribute_the_route_excludes_is_refused(key: str) -> None:
    """A route's template naming an attribute the route excludes is refused, naming the route's
    key: the old value could not be read back from the index to invalidate the old key."""
    # given a route whose template uses its excluded 'card'
    raw = _raw()
    raw["tables"][0]["routes"][1][key] = ["order:{pk}", "card:{card}"]
    # when it is parsed
    message = _refused(raw)
    # then the route's key, the template and the attribute are named
    assert message.startswith(f"tables[0].routes[1].{key}:")
    assert "'card:{card}'" in message
    assert "'card'" in message


# -- B2: a table's settings on a routed table ------------------------------------------------


def test_table_exclusions_apply_to_every_route() -> None:
    """exclude_attributes of a routed table hold for each of its routes, with their own."""
    # given a routed table that excludes 'secret' at the table level
    raw = _raw()
    raw["tables"][0]["exclude_attributes"] = ["secret"]
    # when it is parsed
    table = parse_config(raw, environ={}).tables[0]
    # then every route excludes 'secret', and the orders route still excludes 'card'
    assert [sorted(route.exclude_attributes) for route in table.resolved_routes] == [
        ["secret"],
        ["card", "secret"],
    ]


@pytest.mark.parametrize("position", [0, 1])
def test_a_table_level_excluded_attribute_never_reaches_a_route_document(position: int) -> None:
    """The document a route's index gets leaves out the table's excluded attributes (it reached
    the route's index on the old code)."""
    # given a routed table without an index that excludes 'secret' at the table level
    raw = _raw()
    raw["tables"][0]["exclude_attributes"] = ["secret"]
    table = parse_config(raw, environ={}).tables[0]
    route = table.resolved_routes[position]
    # when the planner builds the route's document
    body = document_body(ORDER, table.route_table(route), Version(seq=1))
    # then 'secret' is not in it
    assert "secret" not in body
    assert body["pk"] == "C1"


def test_route_cache_key_on_a_table_level_excluded_attribute_is_refused() -> None:
    """A route's template naming an attribute its table excludes is refused like its own."""
    # given a table that excludes 'customer', which the orders route's template uses
    raw = _raw()
    raw["tables"][0]["exclude_attributes"] = ["customer"]
    # when it is parsed
    message = _refused(raw)
    # then the route's cache_keys and the attribute are named
    assert message.startswith("tables[0].routes[1].cache_keys:")
    assert "'customer'" in message


@pytest.mark.parametrize("key", ["cache_keys", "search_cache_keys"])
def test_table_cache_keys_on_a_routed_table_without_index_are_refused(key: str) -> None:
    """Without an index of its own a routed table would never render its own cache keys: they
    are refused, saying to put them on the routes (they were silently ignored)."""
    # given a routed table without index, with table-level templates
    raw = _raw()
    raw["tables"][0][key] = ["item:{pk}"]
    # when it is parsed
    message = _refused(raw)
    # then the key is named and the routes are suggested
    assert message.startswith(f"tables[0].{key} is set")
    assert f"routes[N].{key}" in message


def test_table_cache_keys_on_a_routed_table_with_an_index_are_kept() -> None:
    """With an index of its own, a routed table's templates belong to that catch-all index."""
    # given a routed table with its own index and table-level templates
    raw = _raw()
    raw["tables"][0]["index"] = "accounts"
    raw["tables"][0]["cache_keys"] = ["item:{pk}"]
    # when it is parsed
    table = parse_config(raw, environ={}).tables[0]
    # then the catch-all route renders them
    assert table.resolved_routes[-1].cache_keys == ("item:{pk}",)


# -- B3: no index named like another's derived names -----------------------------------------


def _two_tables(first: str, second: str) -> dict[str, Any]:
    return {
        "tables": [
            {"name": "catalog", "index": first},
            {"name": "orders", "index": second},
        ]
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("catalog", "catalog-reindexing"),
        ("catalog", "catalog-000001"),
        ("catalog", "catalog-001234"),
        ("catalog-000002", "catalog"),
        ("catalog-reindexing", "catalog"),
    ],
)
def test_index_named_like_another_tables_derived_name_is_refused(first: str, second: str) -> None:
    """An alias equal to another's reindex alias or versioned index is refused, naming both
    keys: one table would write into the other's index."""
    # given two tables, one named like a name syncer derives from the other
    # when it is parsed
    message = _refused(_two_tables(first, second))
    # then both keys are named
    assert "tables[0].index" in message
    assert "tables[1].index" in message


def test_route_index_named_like_another_routes_derived_name_is_refused() -> None:
    """Routes of one table are checked too: users-reindexing next to users is refused."""
    # given a route named like the users route's reindex alias
    raw = _raw()
    raw["tables"][0]["routes"][1]["index"] = "users-reindexing"
    # when it is parsed
    message = _refused(raw)
    # then both routes' keys are named
    assert "tables[0].routes[1].index" in message
    assert "tables[0].routes[0].index" in message


@pytest.mark.parametrize("second", ["catalog-v2", "catalog-eu", "catalog-00001", "catalogue"])
def test_index_that_only_starts_like_another_is_accepted(second: str) -> None:
    """Names that share a prefix but are no derived name of the other are fine."""
    # given two tables whose aliases share a prefix
    # when they are parsed
    config = parse_config(_two_tables("catalog", second), environ={})
    # then both are kept
    assert [table.index for table in config.tables] == ["catalog", second]
