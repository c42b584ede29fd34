"""Plan, without I/O, what each key change does to OpenSearch and which Redis keys it clears."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from syncer.config import Route, TableConfig
from syncer.config.templates import NO_ATTRIBUTES, Template, fill_template, parse_templates
from syncer.core.coalesce import KeyChange
from syncer.core.documents import (
    SYNCER_FIELD,
    Decision,
    DocumentRef,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.routes import document_in, route_item, select_route
from syncer.core.versions import Order, Version, compare
from syncer.errors import PoisonRecordError

_MISSING = object()
Image = Mapping[str, Any]  # an item's attributes (DynamoDB values: any JSON-like type)
State = tuple[Image, Image]  # (key attributes, image): key attributes win when rendering


def document_body(item: Mapping[str, Any], table: TableConfig, version: Version) -> dict[str, Any]:
    """The ``_source`` of an item: its attributes minus excluded ones, plus ``_syncer``."""
    body = dict(item)
    for name in table.exclude_attributes:  # usually none or a few: cheaper than filtering all
        body.pop(name, None)
    if SYNCER_FIELD in body:
        raise PoisonRecordError(
            f"item has an attribute named {SYNCER_FIELD!r}, which syncer reserves; add it to "
            f"exclude_attributes of table {table.name!r}"
        )
    body[SYNCER_FIELD] = _syncer_meta(table, version, deleted=False)
    return body


def tombstone_body(table: TableConfig, version: Version, ttl: bool = False) -> dict[str, Any]:
    """A deleted item's document: only ``_syncer``, so no older change can resurrect it."""
    meta = _syncer_meta(table, version, deleted=True)
    meta["ttl"] = ttl
    return {SYNCER_FIELD: meta}


def _syncer_meta(table: TableConfig, version: Version, deleted: bool) -> dict[str, Any]:
    return {"table": table.name, "deleted": deleted, **version.to_meta()}


def order_verdict(version: Version, indexed: IndexedDocument | None) -> Verdict | None:
    """SKIP when ``indexed`` is as new or newer, REREAD when unknown, None when it is older."""
    order = compare(version, indexed.version if indexed is not None else None)
    if order is Order.OLDER:
        return Verdict.SKIP
    if order is Order.UNKNOWN:
        return Verdict.REREAD
    return None


def plan_read_state(
    ref: DocumentRef, table: TableConfig, read: ReadState, indexed: IndexedDocument | None
) -> Decision:
    """The write that puts an item as a consistent read found it in place of ``indexed``.

    Only called for a read made after ``indexed`` was seen, so the read holds every change
    that state came from: the write is conditional on ``indexed`` alone (docs/ordering.md).
    """
    if read.item is None:
        if indexed is None or indexed.deleted:
            return Verdict.SKIP
        return DocumentWrite(ref, WriteKind.TOMBSTONE, tombstone_body(table, read.version), indexed)
    body = document_body(read.item, table, read.version)
    return DocumentWrite(ref, WriteKind.INDEX, body, indexed)


def plan_scanned(
    ref: DocumentRef,
    table: TableConfig,
    scanned: ReadState,
    target: TargetState,
    reread: ReadState | None,
) -> Decision:
    """A scanned item's write, when it is newer than the indexed state (reindex, verify)."""
    if reread is not None:
        return plan_read_state(ref, table, reread, target.document)
    verdict = order_verdict(scanned.version, target.document)
    return verdict or plan_read_state(ref, table, scanned, target.document)


def change_state(change: KeyChange, current_item: Image | object | None = _MISSING) -> Image | None:
    """The item as the change leaves it: its new image, or the item read; None when gone.

    ``current_item`` is the item read from the table for streams without a new image
    (KEYS_ONLY, OLD_IMAGE); None there means the item is gone.
    """
    latest = change.latest
    if latest.is_remove:
        return None
    if latest.new_image is not None:
        return latest.new_image
    if current_item is _MISSING:
        raise ValueError(f"change of {change.document_id!r} needs the item read from the table")
    return current_item  # type: ignore[return-value]


def plan_write(
    change: KeyChange,
    route_table: TableConfig,
    document: Image | None,
    target: TargetState,
    reread: ReadState | None = None,
) -> Decision:
    """The write that brings one route's index to the change's state, or why there is none.

    Every table is routed: a table without routes has one, to its own index (docs/routes.md).
    ``route_table`` is the route seen as a table of one index; ``document`` is what the
    change's state (or ``reread``'s item) makes in that index, already routed and transformed,
    or None when the item is not there: gone, selected by another route or by none, or kept
    out by the transform. Then the index gets a tombstone with the change's version, ordered
    exactly like a delete's, so no older change can bring the item back there. ``reread`` is
    the item read again after the planner answered ``Verdict.REREAD`` (its version could not be
    ordered against the indexed state's, which happens only next to a read of the table).
    """
    if reread is not None:
        ref = (target.index, change.document_id)
        read = ReadState(document, reread.version)
        return plan_read_state(ref, route_table, read, target.document)
    version = change.latest.version  # a property that computes: once
    return order_verdict(version, target.document) or _write_change(
        change, version, route_table, document, target
    )


def _write_change(
    change: KeyChange,
    version: Version,
    route_table: TableConfig,
    document: Image | None,
    target: TargetState,
) -> DocumentWrite:
    """The write of a change newer than the target's state: its document, or a tombstone."""
    ref = (target.index, change.document_id)
    latest = change.latest
    if document is None:
        ttl = latest.is_remove and latest.is_ttl_delete
        body = tombstone_body(route_table, version, ttl)
        return DocumentWrite(ref, WriteKind.TOMBSTONE, body, target.document)
    body = document_body(document, route_table, version)
    return DocumentWrite(ref, WriteKind.INDEX, body, target.document)


def plan_document_write(
    change: KeyChange,
    table: TableConfig,
    target: TargetState | IndexedDocument | None,
    current_item: Image | object | None = _MISSING,
    reread: ReadState | None = None,
) -> Decision:
    """``plan_write`` for one of a table's indices, the change's state routed there first.

    ``target`` is the index's state, or only its document in the table's own index; an index
    no route names (a reindex target) is taken as the last route's (the table's own). The
    pipeline routes each change once for all its indices and calls ``plan_write`` itself.
    """
    if not isinstance(target, TargetState):
        target = TargetState(table.index, target)
    routes = table.resolved_routes
    route = routes[-1]
    if route.index != target.index:
        route = next((r for r in routes if r.index == target.index), route)
    if reread is not None:
        document = document_in(route_item(table, reread.item), route)
        return plan_write(change, table.route_table(route), document, target, reread)
    version = change.latest.version
    verdict = order_verdict(version, target.document)
    if verdict is not None:
        return verdict  # before asking for the item, which a skipped change never needs
    item = change_state(change, current_item)
    if len(routes) == 1 and route.match is None and route.transform is None:
        document = item  # what route_item gives, without its allocations (bench/cpu_path.py)
    else:
        document = document_in(route_item(table, item), route)
    return _write_change(change, version, table.route_table(route), document, target)


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
    if only is not None:
        templates = _route_templates(only)  # parsed once for every state
        for first, then in states if templates else ():
            for parsed in templates:
                rendered = fill_template(parsed, first, then)
                if rendered is not None:
                    add(rendered)
    else:
        for first, then in states:
            route = select_route(table, {**then, **first})
            for parsed in _route_templates(route) if route is not None else ():
                rendered = fill_template(parsed, first, then)
                if rendered is not None:
                    add(rendered)
    for route, first, then in indexed:
        for parsed in _route_templates(route):
            rendered = fill_template(parsed, first, then)
            if rendered is not None:
                add(rendered)
    return cache_keys


def _route_templates(route: Route) -> tuple[Template, ...]:
    """A route's item and search cache key templates, parsed (cached by their texts)."""
    if not route.search_cache_keys:
        return parse_templates(route.cache_keys)
    return parse_templates(route.cache_keys + route.search_cache_keys)


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
