"""The cache-key renderer gives what rendering every state with every template of its route gives.

``render_cache_keys`` renders a template that names only key attributes once per key and route
instead of once per state; Hypothesis checks that the keys, and the order the set holds them
in, are those of the plain definition: every state (and every indexed document) rendered with
each template of the route it selects.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.config import Route, RouteMatch, TableConfig
from syncer.config.templates import render_cache_key
from syncer.core.plan import render_cache_keys
from syncer.core.routes import select_route

TEMPLATES = (
    "product:{pk}",
    "product:{pk}:{sk}",
    "category:{category}",
    "{tag:pk}:colour:{colour}",
    "all-products",
    "sk:{sk}",
)
TABLES = (
    TableConfig("catalog", "catalog", TEMPLATES[:3], search_cache_keys=TEMPLATES[3:4]),
    TableConfig("catalog", "catalog"),
    TableConfig(
        "catalog",
        "catalog",
        TEMPLATES[4:],
        routes=(
            Route("shoes", RouteMatch("category", "equals", "shoes"), TEMPLATES[:2]),
            Route(
                "variants",
                RouteMatch("sk", "begins_with", "v"),
                TEMPLATES[1:3],
                search_cache_keys=TEMPLATES[3:4],
            ),
        ),
    ),
    TableConfig(
        "catalog",
        "",
        routes=(Route("only-shoes", RouteMatch("category", "equals", "shoes"), TEMPLATES),),
    ),
)

values = st.one_of(
    st.sampled_from(["shoes", "hats", "v1", "x"]),
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.just(Decimal("1.50")),
    st.just(["list"]),
)
images = st.dictionaries(st.sampled_from(["pk", "sk", "category", "colour"]), values, max_size=4)
key_values = st.fixed_dictionaries(
    {"pk": st.sampled_from(["p1", "p2"]), "sk": st.sampled_from(["v1", "a"])}
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[TableConfig, list[Any], list[Any]]:
    """A table, the states of a few records (each record's images share its key object; the
    records' keys are equal or not, each in an object of its own) and the indexed documents."""
    table = draw(st.sampled_from(TABLES))
    states: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for _ in range(draw(st.integers(1, 3))):
        record_keys = draw(key_values)
        states.extend((record_keys, draw(images)) for _ in range(draw(st.integers(1, 2))))
    latest = states[-1][0] if draw(st.booleans()) else dict(states[-1][0])
    indexed = [
        (route, latest, draw(images))
        for route in draw(st.lists(st.sampled_from(table.resolved_routes), max_size=2))
    ]
    return table, states, indexed


def rendered_one_by_one(table: TableConfig, states: list[Any], indexed: list[Any]) -> set[str]:
    """Every state with every template of the route it selects, then every indexed document."""
    keys: set[str] = set()
    chosen = [(select_route(table, {**then, **first}), first, then) for first, then in states]
    for route, first, then in [*chosen, *indexed]:
        if route is None:
            continue
        for template in route.cache_keys + route.search_cache_keys:
            rendered = render_cache_key(template, {**then, **first})
            if rendered is not None:
                keys.add(rendered)
    return keys


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_cache_keys_are_every_state_rendered_with_its_routes_templates(
    batch: tuple[TableConfig, list[Any], list[Any]],
) -> None:
    """The renderer's keys, in the set's order, are those of rendering each state in turn."""
    # given a table, states of one key or more and the documents the routes' indices hold
    table, states, indexed = batch
    # when its cache keys are rendered
    keys = render_cache_keys(table, states, indexed)
    # then they are the keys (in the same order) of every state rendered with every template
    expected = rendered_one_by_one(table, states, indexed)
    assert keys == expected
    assert list(keys) == list(expected)
