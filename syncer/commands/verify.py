"""Compare a table with its index and repair the drift (``syncer verify``).

The table is the truth. A document is *missing* when the item exists but search does not show
it, a *ghost* when search shows a document whose item is gone, and *differing* when their
content (attributes minus excluded ones) is not equal.

Both passes go page by page, so memory follows the page size and the drift, not the table:
table pages are compared with the documents of the same ids (``_mget``), then index pages are
checked for items that no longer exist (``BatchGetItem`` by key). Keys are taken from document
ids and the table's key schema, never from numbers read back from ``_source`` (they come back as
doubles). ``--repair`` reads each drifted key again (consistently) and writes what it found with
its read version through ``syncer.sinks.search.apply_writes``: a newer stream change wins, and a
document is tombstoned only when that read found no item.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncer.config import Config, Route, TableConfig
from syncer.config.templates import render_cache_key
from syncer.core.attributes import decode_item
from syncer.core.documents import SYNCER_FIELD, DocumentRef, ReadState, Settled, TargetState
from syncer.core.fingerprint import content_fingerprint
from syncer.core.keys import boto_key, typed_key_from_id
from syncer.core.plan import bulk_refresh, document_body, plan_scanned
from syncer.core.records import document_id
from syncer.core.routes import Routed, document_in, route_item
from syncer.core.versions import Version
from syncer.errors import PoisonRecordError
from syncer.sinks.cache import invalidate
from syncer.sinks.ports import Sinks
from syncer.sinks.search import apply_writes, scroll_pages

PAGE_SIZE = 1000
_CONTENT = Version()  # a placeholder: fingerprints leave ``_syncer`` out


@dataclass
class VerifyReport:
    table: str
    checked_items: int = 0
    checked_documents: int = 0
    missing: list[str] = field(default_factory=list)
    ghost: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    unverifiable: int = 0  # hashed long ids whose key could not be rebuilt exactly
    repaired: int = 0
    left_to_stream: int = 0
    unrepaired: list[str] = field(default_factory=list)  # "id: reason" of failed repairs
    typed_keys: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def drift(self) -> int:
        return len(self.missing) + len(self.ghost) + len(self.differing)


def verify_table(
    config: Config, sinks: Sinks, table_name: str, sample: int | None = None, repair: bool = False
) -> VerifyReport:
    """Compare table and index (all of it, or about ``sample`` keys each way) and maybe repair."""
    table = config.require_table(table_name)
    key_types = sinks.items.key_schema(table.name)
    report = VerifyReport(table.name)
    if sample is None:
        pages = (page.items for page in sinks.items.scan(table.name, page_size=PAGE_SIZE))
    else:
        description = sinks.items.describe(table.name)
        count = int(description.get("ItemCount", 0))
        total = max(1, min(1_000_000, math.ceil(count / max(1, sample))))
        segment = random.Random().randrange(total)
        scan = sinks.items.scan(
            table.name, segment=segment, total_segments=total, page_size=PAGE_SIZE, limit=sample
        )
        pages = (page.items for page in scan)
    if table.routes:
        return _verify_routed(config, sinks, table, key_types, report, repair, pages, sample)
    for page in pages:
        _compare_items(sinks, table, key_types, page, report)
    if sample is None:
        _check_ghosts(sinks, table, key_types, _index_pages(sinks, table.index), report)
    else:
        _check_ghosts(sinks, table, key_types, [_random_hits(sinks, table, sample)], report)
    if repair and report.drift:
        _repair(config, sinks, table, key_types, report)
    return report


def _compare_items(
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    raw_items: Sequence[dict[str, Any]],
    report: VerifyReport,
) -> None:
    """Compare one page of table items with the documents of the same ids."""
    expected: dict[str, str] = {}
    typed: dict[str, dict[str, Any]] = {}
    for raw in raw_items:
        item = decode_item(raw)
        doc_id = document_id({name: item[name] for name in key_types})
        try:
            expected[doc_id] = content_fingerprint(document_body(item, table, _CONTENT))
        except PoisonRecordError:
            expected[doc_id] = "unindexable"
        typed[doc_id] = {name: raw[name] for name in key_types}
    report.checked_items += len(expected)
    _compare_documents(sinks, table.index, expected, typed, report)


def _compare_documents(
    sinks: Sinks,
    index: str,
    expected: Mapping[str, str],
    typed: Mapping[str, dict[str, Any]],
    report: VerifyReport,
) -> None:
    """Compare expected content fingerprints with the documents of the same ids in ``index``."""
    if not expected:
        return
    response = sinks.opensearch_guard.call_with_retry(
        sinks.opensearch.mget,
        body={"docs": [{"_index": index, "_id": doc_id} for doc_id in expected]},
        params={"realtime": "true"},
    )
    for doc_id, doc in zip(expected, response["docs"], strict=True):
        source = doc.get("_source") if doc.get("found") else None
        if source is None or source.get(SYNCER_FIELD, {}).get("deleted"):
            report.missing.append(doc_id)
        elif content_fingerprint(source) != expected[doc_id]:
            report.differing.append(doc_id)
        else:
            continue
        report.typed_keys[doc_id] = typed[doc_id]


def _index_pages(sinks: Sinks, alias: str) -> Iterator[list[dict[str, Any]]]:
    """Every live document behind the alias, a page at a time (the alias hides tombstones)."""
    client, guard = sinks.opensearch, sinks.opensearch_guard
    guard.call_with_retry(client.indices.refresh, index=alias)
    body = {"query": {"match_all": {}}, "_source": {"excludes": [SYNCER_FIELD]}}
    yield from scroll_pages(client, guard, alias, body, PAGE_SIZE)


def _random_hits(sinks: Sinks, table: TableConfig, sample: int) -> list[dict[str, Any]]:
    sinks.opensearch_guard.call_with_retry(sinks.opensearch.indices.refresh, index=table.index)
    response = sinks.opensearch_guard.call_with_retry(
        sinks.opensearch.search,
        index=table.index,
        body={
            "size": sample,
            "query": {"function_score": {"random_score": {}}},
            "_source": {"excludes": [SYNCER_FIELD]},
        },
    )
    hits: list[dict[str, Any]] = response["hits"]["hits"]
    return hits


def _hit_key(hit: Mapping[str, Any], key_types: Mapping[str, str]) -> dict[str, Any] | None:
    """The item key of a document: from its id; for a hashed long id, from ``_source``, but
    only when the rebuilt key gives exactly that id back."""
    doc_id = hit["_id"]
    key = typed_key_from_id(doc_id, key_types)
    if key is not None or not doc_id.startswith("#"):
        return key
    source = hit.get("_source") or {}
    typed: dict[str, Any] = {}
    for name, kind in key_types.items():
        value = source.get(name)
        if kind in ("S", "B") and isinstance(value, str):
            typed[name] = {kind: value}
        else:
            return None
    try:
        if document_id(decode_item(typed)) != doc_id:
            return None
    except PoisonRecordError:
        return None
    return boto_key(typed)


def _items_of_hits(
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    hits: Sequence[Mapping[str, Any]],
    report: VerifyReport,
) -> dict[str, tuple[dict[str, Any], dict[str, Any] | None]]:
    """(key, item or None) of each document of a page, by id, from consistent reads."""
    report.checked_documents += len(hits)
    keys: dict[str, dict[str, Any]] = {}
    for hit in hits:
        key = _hit_key(hit, key_types)
        if key is None:
            report.unverifiable += 1
        else:
            keys[hit["_id"]] = key
    if not keys:
        return {}
    found = sinks.items.read(table.name, list(keys.values()))
    return {
        doc_id: (key, dict(item) if (item := found[doc_id].item) is not None else None)
        for doc_id, key in keys.items()
    }


def _check_ghosts(
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    pages: Any,
    report: VerifyReport,
) -> None:
    """Documents whose item a consistent read does not find are ghosts."""
    for hits in pages:
        for doc_id, (key, item) in _items_of_hits(sinks, table, key_types, hits, report).items():
            if item is None:
                report.ghost.append(doc_id)
                report.typed_keys[doc_id] = key


def _repair(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    report: VerifyReport,
) -> None:
    """Read every drifted key again and write what the table holds, where that is newer."""
    drifted = list(dict.fromkeys([*report.missing, *report.differing, *report.ghost]))
    for start in range(0, len(drifted), PAGE_SIZE):
        _repair_page(config, sinks, table, key_types, drifted[start : start + PAGE_SIZE], report)


def _read_states(
    sinks: Sinks, table: TableConfig, keys: Mapping[DocumentRef, Mapping[str, Any]]
) -> dict[DocumentRef, ReadState]:
    found = sinks.items.read(table.name, list(keys.values()))
    return {ref: found[ref[1]] for ref in keys}


def _repair_page(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    doc_ids: Sequence[str],
    report: VerifyReport,
) -> None:
    keys = {(table.index, d): boto_key(report.typed_keys[d]) for d in doc_ids}
    states = _read_states(sinks, table, keys)

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        return plan_scanned(ref, table, states[ref], target, reread)

    def reread(refs: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        return dict(_read_states(sinks, table, {ref: keys[ref] for ref in refs}))

    result = apply_writes(
        sinks.opensearch,
        sinks.opensearch_guard,
        list(keys),
        plan,
        config.opensearch,
        reread=reread,
        fields=sorted(table.cache_key_fields),
    )
    cache_keys: set[str] = set()
    for ref, outcome in result.outcomes.items():
        if outcome.status in (Settled.WRITTEN, Settled.TOMBSTONED):
            report.repaired += 1
        elif outcome.status is Settled.SKIPPED:
            report.left_to_stream += 1  # the index already holds a newer state
        else:
            report.unrepaired.append(f"{ref[1]}: {outcome.reason}")
        indexed = result.observed.get(ref)
        for state in (states[ref].item, indexed.fields if indexed is not None else None):
            for template in table.cache_keys:
                key = render_cache_key(template, state or {})
                if key is not None:
                    cache_keys.add(key)
    if cache_keys:
        sinks.redis_guard.call_with_retry(invalidate, sinks.redis, cache_keys)


# -- routed tables (docs/routes.md): each route's index against the items that route selects --


def _verify_routed(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    report: VerifyReport,
    repair: bool,
    pages: Iterator[list[dict[str, Any]]],
    sample: int | None,
) -> VerifyReport:
    """Every route's index holds exactly the items its route selects, shaped by its transform.

    With ``sample``, the scan pages are a sample and each route index gives ``sample`` random
    documents to check for ghosts.
    """
    routes = table.resolved_routes
    for page in pages:
        expected: dict[str, dict[str, str]] = {route.index: {} for route in routes}
        typed: dict[str, dict[str, Any]] = {}
        for raw in page:
            item = decode_item(raw)
            doc_id = document_id({name: item[name] for name in key_types})
            typed[doc_id] = {name: raw[name] for name in key_types}
            state = route_item(table, item)
            if state.route is None:
                continue
            view = table.route_table(state.route)
            try:
                document = document_in(state, state.route)
                if document is None:
                    continue
                fingerprint = content_fingerprint(document_body(document, view, _CONTENT))
            except PoisonRecordError:
                fingerprint = "unindexable"
            expected[state.route.index][doc_id] = fingerprint
        report.checked_items += len(typed)
        for route in routes:
            _compare_documents(sinks, route.index, expected[route.index], typed, report)
    for route in routes:
        hits = (
            _index_pages(sinks, route.index)
            if sample is None
            else iter([_random_hits(sinks, table.route_table(route), sample)])
        )
        _check_routed_ghosts(sinks, table, route, key_types, hits, report)
    if repair and report.drift:
        drifted = list(dict.fromkeys([*report.missing, *report.differing, *report.ghost]))
        for start in range(0, len(drifted), PAGE_SIZE):
            _repair_routed(config, sinks, table, drifted[start : start + PAGE_SIZE], report)
    return report


def _check_routed_ghosts(
    sinks: Sinks,
    table: TableConfig,
    route: Route,
    key_types: Mapping[str, str],
    pages: Iterator[list[dict[str, Any]]],
    report: VerifyReport,
) -> None:
    """Documents of ``route``'s index whose item is gone or that another route (or none) selects."""
    for hits in pages:
        for doc_id, (key, item) in _items_of_hits(sinks, table, key_types, hits, report).items():
            try:
                belongs = document_in(route_item(table, item), route) is not None
            except PoisonRecordError:
                belongs = True  # the item is meant to be here; its content check reports it
            if not belongs:
                report.ghost.append(doc_id)
                report.typed_keys[doc_id] = key


def _repair_routed(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    doc_ids: Sequence[str],
    report: VerifyReport,
) -> None:
    """Read drifted items again and write each route's index from what the table holds."""
    routes = {alias: route for route in table.resolved_routes for alias in (route.index,)}
    keys = {d: boto_key(report.typed_keys[d]) for d in doc_ids}
    refs = [(alias, d) for d in doc_ids for alias in routes]
    first = next(iter(routes))
    states = _read_states(sinks, table, {(first, d): keys[d] for d in doc_ids})
    by_id = {ref[1]: state for ref, state in states.items()}
    routed: dict[tuple[str, Version], Routed] = {}

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        state = reread if reread is not None else by_id[ref[1]]
        memo = (ref[1], state.version)
        if memo not in routed:
            routed[memo] = route_item(table, state.item)
        route = routes[ref[0]]
        document = document_in(routed[memo], route)
        scanned = ReadState(document, by_id[ref[1]].version)
        again = None if reread is None else ReadState(document, reread.version)
        return plan_scanned(ref, table.route_table(route), scanned, target, again)

    def reread(asked: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        ids = list(dict.fromkeys(ref[1] for ref in asked))  # one read per item, for all routes
        fresh = _read_states(sinks, table, {(first, d): keys[d] for d in ids})
        read = {ref[1]: state for ref, state in fresh.items()}
        return {ref: read[ref[1]] for ref in asked}

    fields = sorted({n for r in routes.values() for n in table.route_table(r).cache_key_fields})
    result = apply_writes(
        sinks.opensearch,
        sinks.opensearch_guard,
        refs,
        plan,
        config.opensearch,
        reread=reread,
        fields=fields,
        refresh=bulk_refresh([table]),  # search cache keys: cleared once the repair is visible
    )
    for ref, outcome in result.outcomes.items():
        if outcome.status in (Settled.WRITTEN, Settled.TOMBSTONED):
            report.repaired += 1
        elif outcome.status is Settled.SKIPPED:
            continue
        else:
            report.unrepaired.append(f"{ref[0]}/{ref[1]}: {outcome.reason}")
    cache_keys: set[str] = set()
    for doc_id in doc_ids:
        item = by_id[doc_id].item
        indexed = [
            (route, document.fields)
            for alias, route in routes.items()
            if (document := result.observed.get((alias, doc_id))) is not None
        ]
        cache_keys |= _routed_cache_keys(table, item, indexed)
    if cache_keys:
        sinks.redis_guard.call_with_retry(invalidate, sinks.redis, cache_keys)


def _routed_cache_keys(
    table: TableConfig,
    item: Mapping[str, Any] | None,
    indexed: Sequence[tuple[Route, Mapping[str, Any]]],
) -> set[str]:
    """The cache keys of an item as read and of its indexed documents, each with its route's."""
    pairs: list[tuple[Route, Mapping[str, Any]]] = list(indexed)
    if item is not None and (state := route_item(table, item)).route is not None:
        pairs.append((state.route, item))
    keys: set[str] = set()
    for route, attributes in pairs:
        for template in route.cache_keys + route.search_cache_keys:
            key = render_cache_key(template, attributes)
            if key is not None:
                keys.add(key)
    return keys
