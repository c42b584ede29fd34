"""Plan, without I/O, which Redis keys a key change clears, and the bulk's ``refresh``.

The document planners live in ``syncer.core.planners`` and the document bodies in
``syncer.core.bodies``; their names are importable from here too, where they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from syncer.config import Route, TableConfig
from syncer.config.templates import NO_ATTRIBUTES, Template, fill_template
from syncer.core.bodies import change_state as change_state
from syncer.core.bodies import document_body as document_body
from syncer.core.bodies import tombstone_body as tombstone_body
from syncer.core.coalesce import KeyChange
from syncer.core.planners import order_verdict as order_verdict
from syncer.core.planners import plan_read_state as plan_read_state
from syncer.core.planners import plan_scanned as plan_scanned
from syncer.core.planners import plan_write as plan_write
from syncer.core.routes import select_route

Image = Mapping[str, Any]  # an item's attributes (DynamoDB values: any JSON-like type)
State = tuple[Image, Image]  # (key attributes, image): key attributes win when rendering


def item_states(change: KeyChange) -> list[State]:
    """Every state of the item in a change's records, as (key attributes, image) pairs.

    Old and new images of every record count; a record without images gives its key alone.
    """
    states: list[State] = []
    for record in change.records:
        keys = record.keys
        old_image, new_image = record.old_image, record.new_image
        if old_image is not None:
            states.append((keys, old_image))
        if new_image is not None:
            states.append((keys, new_image))
        elif old_image is None:
            # The key alone renders a subset of what key + image renders: only without images.
            states.append((keys, NO_ATTRIBUTES))
    return states


def plan_cache_keys(
    change: KeyChange,
    table: TableConfig,
    extra_states: Iterable[Image | None] = (),
    indexed: Sequence[tuple[Route, Image]] = (),
) -> set[str]:
    """Every cache key (item and search-derived) any state of the item in this batch maps to.

    The old and new images of every record and ``extra_states`` (the item read from the table)
    render with the templates of the route each selects; ``indexed`` pairs each document found
    in a route's index with that route, so an item that moves clears the keys of the route it
    leaves and of the one it joins.
    """
    keys = change.latest.keys
    states = item_states(change)
    for state in extra_states:
        if state is not None:
            states.append((keys, state))
    if not indexed:
        return render_cache_keys(table, states)
    return render_cache_keys(table, states, [(route, keys, fields) for route, fields in indexed])


def render_cache_keys(
    table: TableConfig,
    states: Iterable[State],
    indexed: Iterable[tuple[Route, Image, Image]] = (),
) -> set[str]:
    """The one cache-key renderer: each (key, image) state with its own route's templates.

    ``indexed`` gives (route, key, fields) of documents found in a route's index, rendered
    with that route's templates. Search cache keys are invalidated with the item keys, after a
    bulk that waited (``bulk_refresh``).
    """
    routes = table.resolved_routes
    # One catch-all route (a table without routes) selects every state without looking at it.
    only = routes[0] if len(routes) == 1 and routes[0].match is None else None
    cache_keys: set[str] = set()
    add = cache_keys.add
    # A template naming only key attributes renders alike for every state with the same key
    # attributes (they win over any image): after a key's state was rendered with a route, the
    # next states of that key and route (its other image, the indexed document) render only
    # the other templates. The set is the same, its new keys added in the same order.
    last_first: Image | None = None
    last_route: Route | None = None
    beyond: Sequence[Template] | None = None  # last_route's templates beyond last_first's key
    templates: Sequence[Template]
    for route, first, then in _routed(table, only, states, indexed):
        if first is last_first and route is last_route:
            if beyond is None:
                beyond = route.templates_outside(tuple(first))
            templates = beyond
        else:
            last_first, last_route, beyond = first, route, None
            templates = route.templates
        for parsed in templates:
            rendered = fill_template(parsed, first, then)
            if rendered is not None:
                add(rendered)
    return cache_keys


def _routed(
    table: TableConfig,
    only: Route | None,
    states: Iterable[State],
    indexed: Iterable[tuple[Route, Image, Image]],
) -> Iterator[tuple[Route, Image, Image]]:
    """Each state with the route it selects (``only`` when the table has one catch-all route),
    then the indexed documents with theirs; a state no route selects has no cache keys."""
    for first, then in states:
        route = only if only is not None else select_route(table, {**then, **first})
        if route is not None:
            yield route, first, then
    yield from indexed


def old_image_fields(table: TableConfig) -> tuple[str, ...]:
    """The attributes ``render_cache_keys`` can read from a state: all an old image is used for.

    Each route's match attribute (a state is tried against every route in order) and the
    attributes its cache key templates (item and search-derived) name; key attributes come from
    the Keys, which win over any image. The decoder reads only these of an OldImage, so a bad
    value elsewhere in it is never read and harms nothing (docs/operations.md).
    """
    names: set[str] = set()
    for route in table.resolved_routes:
        if route.match is not None:
            names.add(route.match.attribute)
        for parsed in route.templates:
            names.update(name for _, name in parsed if name is not None)
    return tuple(sorted(names))


def bulk_refresh(tables: Iterable[TableConfig]) -> str | None:
    """The ``refresh`` of a batch's ``_bulk``: ``"true"`` if a table has search cache keys.

    Cache keys are invalidated after the bulk answers. With ``refresh=true`` the bulk refreshes
    the shards it wrote before answering, so a cache refilled from a search query after the
    invalidation sees the writes. ``wait_for`` would add no refresh but hold each batch up to a
    refresh interval, item keys included (docs/cache-consistency.md, bench/search_refresh.py).
    Other tables keep the index's own refresh.
    """
    return (
        "true"
        if any(route.search_cache_keys for table in tables for route in table.resolved_routes)
        else None
    )
