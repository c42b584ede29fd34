"""Routing picks the first route that selects an item state and plans a write per route index."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from syncer.config import Route, RouteMatch, TableConfig, parse_config
from syncer.core.coalesce import KeyChange, coalesce_latest_per_key
from syncer.core.documents import SYNCER_FIELD, IndexedDocument, TargetState, Verdict, WriteKind
from syncer.core.plan import bulk_refresh, plan_routed_cache_keys, plan_routed_write
from syncer.core.records import padded_sequence
from syncer.core.routes import document_in, route_item, routing_table, select_route
from syncer.core.versions import Version
from syncer.errors import ConfigError, PoisonRecordError

T = "tests.unit.transforms_for_tests"
SEQ_OLD, SEQ, SEQ_NEW = 111000000000000000001, 111000000000000000057, 111000000000000000210

RAW: dict[str, Any] = {
    "tables": [
        {
            "name": "catalog",
            "routes": [
                {
                    "match": {"attribute": "type", "equals": "review"},
                    "index": "reviews",
                    "cache_keys": ["review:{pk}"],
                },
                {
                    "match": {"attribute": "sk", "begins_with": "PRODUCT#"},
                    "index": "products",
                    "cache_keys": ["product:{pk}", "category:{category}"],
                    "exclude_attributes": ["cost"],
                    "transform": f"{T}:shout",
                },
            ],
        }
    ]
}


def _table(raw: dict[str, Any] | None = None) -> TableConfig:
    return parse_config(raw or copy.deepcopy(RAW), environ={}).tables[0]


TABLE = _table()
REVIEWS, PRODUCTS = TABLE.routes
PRODUCT = {
    "pk": "P1",
    "sk": "PRODUCT#1",
    "type": "product",
    "name": "boot",
    "cost": 3,
    "category": "shoes",
}
AS_REVIEW = {**PRODUCT, "type": "review"}


def _change(*records: Any) -> KeyChange:
    (change,) = coalesce_latest_per_key(records)
    return change


def _target(index: str, seq: int | None = None, deleted: bool = False) -> TargetState:
    if seq is None:
        return TargetState(f"{index}-000001", None)
    document = IndexedDocument(Version(seq=seq), deleted, 4, 1, {})
    return TargetState(f"{index}-000001", document)


def test_parsed_routes_keep_their_order_and_settings() -> None:
    """Routes come out of the TOML in order, with match, index, keys, exclusions and transform."""
    assert TABLE.index == ""
    assert Route("reviews", RouteMatch("type", "equals", "review"), ("review:{pk}",)) == REVIEWS
    assert PRODUCTS.match == RouteMatch("sk", "begins_with", "PRODUCT#")
    assert PRODUCTS.exclude_attributes == frozenset({"cost"})
    assert TABLE.resolved_routes == TABLE.routes


def test_a_table_without_routes_has_one_catch_all_route() -> None:
    """A plain table is one route to its own index, and its route table is itself."""
    plain = TableConfig("t", "t-index", ("k:{pk}",), frozenset({"x"}))
    (route,) = plain.resolved_routes
    assert route == Route("t-index", None, ("k:{pk}",), frozenset({"x"}))
    assert plain.route_table(route) is plain


def test_the_table_index_catches_what_no_route_selects() -> None:
    """With a table-level index, unmatched items go there, after every route."""
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["index"] = "catalog"
    table = _table(raw)
    assert select_route(table, {"pk": "O1", "sk": "ORDER#1"}) == Route("catalog")
    assert [r.index for r in table.resolved_routes] == ["reviews", "products", "catalog"]


@pytest.mark.parametrize(
    ("item", "index"),
    [
        (PRODUCT, "products"),
        (AS_REVIEW, "reviews"),  # first match wins: the type route comes first
        ({"pk": "C1", "sk": "CATEGORY#1"}, None),
        ({"pk": "N1", "sk": 5}, None),  # a number never begins with a text prefix here
        ({"pk": "R", "sk": "X", "type": "review"}, "reviews"),
    ],
)
def test_first_matching_route_wins(item: dict[str, Any], index: str | None) -> None:
    """The first route in order whose match selects the item is its route; none: skipped."""
    route = select_route(TABLE, item)
    assert (route.index if route else None) == index


def test_transform_shapes_the_document_and_sees_a_copy() -> None:
    """The transform's result is the document; the item given to it is a copy."""
    item = dict(PRODUCT)
    state = route_item(TABLE, item)
    assert state.document is not None
    assert state.document["name"] == "BOOT"
    assert item["name"] == "boot"


def test_a_transform_mutating_nested_values_reaches_nothing_else() -> None:
    """A transform that changes nested maps and lists in place cannot change the item it was
    given, its cache keys, or what the next call of the transform sees."""
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["routes"][1]["transform"] = f"{T}:tag_in_place"
    table = parse_config(raw, environ={}).tables[0]
    item = {**PRODUCT, "details": {"colour": "red"}, "tags": ["new"]}
    before = copy.deepcopy(item)
    first = route_item(table, item)
    second = route_item(table, item)
    assert item == before
    assert first.document == second.document
    assert first.document is not None
    assert first.document["tags"] == ["new", "seen"]
    assert first.document["details"] == {"colour": "red", "shouted": True}


@pytest.mark.parametrize(
    ("transform", "error"),
    [("explode", "RuntimeError: no shape for this item"), ("a_list", "returned list, not a JSON")],
)
def test_a_failing_transform_is_an_error_of_its_own_route_only(transform: str, error: str) -> None:
    """An exception or a non-dict result fails that route's document, naming the callable."""
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["routes"][1]["transform"] = f"{T}:{transform}"
    table = _table(raw)
    state = route_item(table, PRODUCT)
    with pytest.raises(PoisonRecordError, match=rf"{T}:{transform}.*{error}"):
        document_in(state, table.routes[1])
    assert document_in(state, table.routes[0]) is None  # the other route gets its tombstone


def test_a_transform_returning_none_keeps_the_item_out() -> None:
    """None from the transform leaves no document in the route's index."""
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["routes"][1]["transform"] = f"{T}:hide"
    table = _table(raw)
    state = route_item(table, PRODUCT)
    assert state.route == table.routes[1]
    assert document_in(state, table.routes[1]) is None


def test_a_move_writes_the_new_route_and_tombstones_the_old(make_record) -> None:
    """A product turned review: a document in reviews, a tombstone with its version in products."""
    change = _change(
        make_record("MODIFY", SEQ, keys={"pk": "P1", "sk": "PRODUCT#1"}, new=AS_REVIEW, old=PRODUCT)
    )
    state = route_item(TABLE, change.latest.new_image)
    to_reviews = plan_routed_write(
        change, TABLE.route_table(REVIEWS), document_in(state, REVIEWS), _target("reviews")
    )
    to_products = plan_routed_write(
        change,
        TABLE.route_table(PRODUCTS),
        document_in(state, PRODUCTS),
        _target("products", SEQ_OLD),
    )
    assert not isinstance(to_reviews, Verdict)
    assert not isinstance(to_products, Verdict)
    assert to_reviews.kind is WriteKind.INDEX
    assert to_reviews.body["type"] == "review"
    assert to_products.kind is WriteKind.TOMBSTONE
    assert to_products.body[SYNCER_FIELD]["seq"] == padded_sequence(SEQ)
    assert to_products.body[SYNCER_FIELD]["deleted"] is True


def test_a_tombstone_in_another_route_is_ordered_like_a_delete(make_record) -> None:
    """An older change never replaces what a newer one left in another route's index."""
    change = _change(
        make_record("MODIFY", SEQ, keys={"pk": "P1", "sk": "PRODUCT#1"}, new=AS_REVIEW, old=PRODUCT)
    )
    newer = plan_routed_write(
        change, TABLE.route_table(PRODUCTS), None, _target("products", SEQ_NEW, deleted=True)
    )
    absent = plan_routed_write(change, TABLE.route_table(PRODUCTS), None, _target("products"))
    assert newer is Verdict.SKIP
    assert not isinstance(absent, Verdict)
    assert absent.kind is WriteKind.TOMBSTONE  # absent too: a late older change must meet it


def test_cache_keys_of_a_move_cover_both_routes(make_record) -> None:
    """The old image renders with the products templates, the new one with the reviews ones."""
    change = _change(
        make_record("MODIFY", SEQ, keys={"pk": "P1", "sk": "PRODUCT#1"}, new=AS_REVIEW, old=PRODUCT)
    )
    keys = plan_routed_cache_keys(change, TABLE)
    assert keys == {"product:P1", "category:shoes", "review:P1"}


def test_cache_keys_of_indexed_documents_use_their_index_route(make_record) -> None:
    """A document found in products renders with the products templates (KEYS_ONLY stream)."""
    change = _change(
        make_record("REMOVE", SEQ, keys={"pk": "P1", "sk": "PRODUCT#1"}, view_type="KEYS_ONLY")
    )
    keys = plan_routed_cache_keys(change, TABLE, [(PRODUCTS, {"category": "hats"})])
    assert keys == {"product:P1", "category:hats"}


def test_routing_table_lists_routes_in_order() -> None:
    """The dry-run table names each match, index, transform, and the skipped rest."""
    lines = routing_table(TABLE)
    assert lines[0] == "1. type equals 'review' -> reviews (cache keys review:{pk})"
    assert lines[1].startswith("2. sk begins with 'PRODUCT#' -> products (")
    assert f"transform {T}:shout" in lines[1]
    assert lines[2] == "3. every other item -> skipped (counted as unrouted)"


def _refused(mutate: Any) -> str:
    raw = copy.deepcopy(RAW)
    mutate(raw["tables"][0])
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})
    return str(caught.value)


def test_unknown_match_operator_is_refused_by_key() -> None:
    """A match operator other than equals/begins_with is refused, naming the key."""
    message = _refused(lambda t: t["routes"][0]["match"].update(contains="x"))
    assert "tables[0].routes[0].match.contains" in message


def test_route_without_index_is_refused_by_key() -> None:
    """A route needs an index."""
    message = _refused(lambda t: t["routes"][1].pop("index"))
    assert "tables[0].routes[1].index is required" in message


def test_route_without_match_is_refused() -> None:
    """A route needs a match (the table's own index is the catch-all)."""
    message = _refused(lambda t: t["routes"][0].pop("match"))
    assert "tables[0].routes[0].match is required" in message


@pytest.mark.parametrize("where", ["route", "table"])
def test_duplicate_index_across_routes_and_tables_is_refused(where: str) -> None:
    """One index named by two routes, or by a route and a table, is refused naming both keys."""

    def mutate(table: dict[str, Any]) -> None:
        if where == "route":
            table["routes"][1]["index"] = "reviews"
        else:
            table["index"] = "products"

    message = _refused(mutate)
    assert "'reviews'" in message or "'products'" in message
    assert "already named by tables[0].routes[0].index" in message or "tables[0].index" in message


def test_index_shared_with_another_table_is_refused() -> None:
    """A route index that another (plain) table writes is refused."""
    raw = copy.deepcopy(RAW)
    raw["tables"].append({"name": "other", "index": "products"})
    with pytest.raises(
        ConfigError,
        match=r"tables\[1\]\.index names index 'products', already named by tables\[0\]\.routes\[1\]",
    ):
        parse_config(raw, environ={})


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no_such_module_xyz:f", "cannot be imported: ModuleNotFoundError"),
        (f"{T}:missing", "has no callable 'missing'"),
        (f"{T}:NOT_CALLABLE", "has no callable 'NOT_CALLABLE'"),
        ("just_a_name", 'not of the form "module:function"'),
    ],
)
def test_transform_that_cannot_be_imported_is_refused(spec: str, reason: str) -> None:
    """A transform is imported at start; failing that is a ConfigError naming the key."""
    message = _refused(lambda t: t["routes"][1].update(transform=spec))
    assert message.startswith("tables[0].routes[1].transform:")
    assert reason in message


def test_routed_table_may_leave_out_its_index_but_a_plain_one_may_not() -> None:
    """index is optional only when the table has routes."""
    message = _refused(lambda t: t.pop("routes"))
    assert "tables[0].index is required" in message


def test_a_route_may_name_search_cache_keys() -> None:
    """A route's search_cache_keys are rendered with its items and make the bulk refresh."""
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["routes"][0]["search_cache_keys"] = ["reviews-page:{pk}"]
    table = _table(raw)
    assert table.routes[0].search_cache_keys == ("reviews-page:{pk}",)
    assert bulk_refresh([table]) == "true"
    assert bulk_refresh([TABLE]) is None


def test_search_cache_keys_of_a_route_are_invalidated(make_record) -> None:
    """A review's change clears its route's search-derived keys with its item keys."""
    raw = copy.deepcopy(RAW)
    raw["tables"][0]["routes"][0]["search_cache_keys"] = ["reviews-page:{pk}"]
    table = _table(raw)
    change = _change(
        make_record("INSERT", SEQ, keys={"pk": "P1", "sk": "REVIEW#1"}, new={"type": "review"})
    )
    assert plan_routed_cache_keys(change, table) == {"review:P1", "reviews-page:P1"}
