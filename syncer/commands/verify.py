"""Compare a table with its index and repair the drift (``syncer verify``).

The table is the truth. A document is *missing* when the item exists but search does not show
it, a *ghost* when search shows a document whose item is gone, and *differing* when their
content (attributes minus excluded ones) is not equal.

Both passes go page by page, so memory follows the page size and the drift, not the table:
table pages are compared with the documents of the same ids (``_mget``), then index pages are
checked for items that no longer exist (``BatchGetItem`` by key). Keys are taken from document
ids and the table's key schema, never from numbers read back from ``_source`` (they come back as
doubles); a document whose id no item key makes (left by another tool, written by hand, or a
hashed long id that no scanned item has) is *stray*. ``--repair`` reads each drifted key again (consistently) and writes what it found with
its read version through the search store (``syncer.sinks.search.write_documents``): a newer stream change wins, and a
document is tombstoned only when that read found no item. A stray document is tombstoned
unless it was written after the verify began. Every table is routed (a table without routes has
one route, to its own index): each route's index holds exactly the items its route selects.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncer.config import Config, Route, TableConfig
from syncer.core.attributes import decode_item
from syncer.core.command_planners import RepairPlanner, StrayPlanner
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentRef,
    ReadState,
    Settled,
)
from syncer.core.fingerprint import content_fingerprint
from syncer.core.keys import TypedKey, boto_key, lambda_key, typed_key_from_id
from syncer.core.plan import bulk_refresh, document_body, render_cache_keys
from syncer.core.records import document_id
from syncer.core.rounds import write_documents
from syncer.core.routes import document_in, route_item
from syncer.core.versions import Version, read_version
from syncer.errors import ConfigError, PoisonRecordError
from syncer.sinks.ports import Sinks
from syncer.sinks.search import ApplyResult, Hit, Planner, Rereader, WriteOptions

PAGE_SIZE = 1000
# A sample is one search's hits: OpenSearch answers at most index.max_result_window (10,000 by
# default) hits per search (https://opensearch.org/docs/latest/api-reference/search/).
MAX_SAMPLE = 10_000
_CONTENT = Version()  # a placeholder: fingerprints leave ``_syncer`` out
_NO_KEY = "its id makes no item key, so its item cannot be read again"


@dataclass
class VerifyReport:
    table: str
    checked_items: int = 0
    checked_documents: int = 0
    missing: list[str] = field(default_factory=list)
    ghost: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    stray: list[DocumentRef] = field(default_factory=list)  # ids no item key makes, by index
    unverifiable: int = 0  # --sample: hashed long ids no sampled item has and _source can't key
    repaired: int = 0
    left_to_stream: int = 0
    unrepaired: list[str] = field(default_factory=list)  # "index/id: reason" of failed repairs
    typed_keys: dict[str, TypedKey] = field(default_factory=dict, repr=False)
    # Keys of scanned items with hashed long ids (rare): they key documents _source cannot.
    hashed_keys: dict[str, TypedKey] = field(default_factory=dict, repr=False)

    @property
    def drift(self) -> int:
        return len(self.missing) + len(self.ghost) + len(self.differing) + len(self.stray)


def check_sample(sample: int | None) -> None:
    """Refuse a sample size the scan or the search cannot take, before any request."""
    if sample is not None and not 1 <= sample <= MAX_SAMPLE:
        raise ConfigError(
            f"--sample must be between 1 and {MAX_SAMPLE:,} (one search's hits), not {sample}; "
            "leave it out to check everything"
        )


def verify_table(
    config: Config, sinks: Sinks, table_name: str, sample: int | None = None, repair: bool = False
) -> VerifyReport:
    """Compare table and indices (all, or about ``sample`` keys each way) and maybe repair.

    Every route's index holds exactly the items its route selects, shaped by its transform.
    With ``sample``, the scan pages are a sample and each route's index gives ``sample``
    random documents to check for ghosts.
    """
    check_sample(sample)
    table = config.require_table(table_name)
    started = time.time()
    key_types = sinks.items.key_schema(table.name)
    report = VerifyReport(table.name)
    for page in _scan_pages(sinks, table, sample):
        _compare_page(sinks, table, key_types, page, report)
    for route in table.resolved_routes:
        hits = (
            _index_pages(sinks, route.index)
            if sample is None
            else iter([_random_hits(sinks, route.index, sample)])
        )
        _check_ghosts(sinks, table, route, key_types, hits, report, whole=sample is None)
    if repair and report.drift:
        drifted = list(dict.fromkeys([*report.missing, *report.differing, *report.ghost]))
        for start in range(0, len(drifted), PAGE_SIZE):
            _repair_page(sinks, table, drifted[start : start + PAGE_SIZE], report)
        # The stray documents' items were absent from the scan, which ran in this interval.
        absent = read_version(started, time.time())
        for start in range(0, len(report.stray), PAGE_SIZE):
            strays = report.stray[start : start + PAGE_SIZE]
            _remove_strays(sinks, table, strays, absent, report)
    return report


def _scan_pages(sinks: Sinks, table: TableConfig, sample: int | None) -> Iterator[list[Hit]]:
    """The table's items a page at a time: all of them, or about ``sample`` from one segment."""
    if sample is None:
        scan = sinks.items.scan(table.name, page_size=PAGE_SIZE)
    else:
        count = int(sinks.items.describe(table.name).get("ItemCount", 0))
        total = max(1, min(1_000_000, math.ceil(count / sample)))
        segment = random.Random().randrange(total)
        scan = sinks.items.scan(
            table.name, segment=segment, total_segments=total, page_size=PAGE_SIZE, limit=sample
        )
    return (page.items for page in scan)


def _compare_page(
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    page: Sequence[dict[str, Any]],
    report: VerifyReport,
) -> None:
    """Compare one page of items with the documents of the same ids in each route's index."""
    routes = table.resolved_routes
    expected: dict[str, dict[str, str]] = {route.index: {} for route in routes}
    typed: dict[str, TypedKey] = {}
    for raw in page:
        item = decode_item(raw)
        doc_id = document_id({name: item[name] for name in key_types})
        typed[doc_id] = {name: raw[name] for name in key_types}
        if doc_id.startswith("#"):
            report.hashed_keys[doc_id] = typed[doc_id]
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


def _compare_documents(
    sinks: Sinks,
    index: str,
    expected: Mapping[str, str],
    typed: Mapping[str, TypedKey],
    report: VerifyReport,
) -> None:
    """Compare expected content fingerprints with the documents of the same ids in ``index``."""
    if not expected:
        return
    docs = sinks.search.mget([{"_index": index, "_id": doc_id} for doc_id in expected])
    for doc_id, doc in zip(expected, docs, strict=True):
        source = doc.get("_source") if doc.get("found") else None
        if source is None or source.get(SYNCER_FIELD, {}).get("deleted"):
            report.missing.append(doc_id)
        elif content_fingerprint(source) != expected[doc_id]:
            report.differing.append(doc_id)
        else:
            continue
        report.typed_keys[doc_id] = typed[doc_id]


def _index_pages(sinks: Sinks, alias: str) -> Iterator[list[Hit]]:
    """Every live document behind the alias, a page at a time (the alias hides tombstones)."""
    sinks.search.refresh(alias)
    body = {"query": {"match_all": {}}, "_source": {"excludes": [SYNCER_FIELD]}}
    yield from sinks.search.scroll(alias, body, PAGE_SIZE)


def _random_hits(sinks: Sinks, alias: str, sample: int) -> list[Hit]:
    sinks.search.refresh(alias)
    body = {
        "size": sample,
        "query": {"function_score": {"random_score": {}}},
        "_source": {"excludes": [SYNCER_FIELD]},
    }
    return sinks.search.search(alias, body)


def _hit_key(hit: Hit, key_types: Mapping[str, str]) -> TypedKey | None:
    """The item key of a document: from its id; for a hashed long id, from ``_source``, but
    only when the rebuilt key gives exactly that id back."""
    doc_id = hit["_id"]
    key = typed_key_from_id(doc_id, key_types)
    if key is not None or not doc_id.startswith("#"):
        return key
    source = hit.get("_source") or {}
    typed: TypedKey = {}
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
    route: Route,
    key_types: Mapping[str, str],
    hits: Sequence[Hit],
    report: VerifyReport,
    whole: bool,
) -> dict[str, tuple[TypedKey, dict[str, Any] | None]]:
    """(key, item or None) of each document of a page, by id, from consistent reads.

    A document whose id no item key makes is stray. So is, after a whole scan, a hashed long id
    that no scanned item has and whose ``_source`` cannot key; a sample can only count those.
    """
    report.checked_documents += len(hits)
    keys: dict[str, TypedKey] = {}
    for hit in hits:
        doc_id = hit["_id"]
        key = _hit_key(hit, key_types) or report.hashed_keys.get(doc_id)
        if key is not None:
            keys[doc_id] = key
        elif whole or not doc_id.startswith("#"):
            report.stray.append((route.index, doc_id))
        else:
            report.unverifiable += 1
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
    route: Route,
    key_types: Mapping[str, str],
    pages: Iterable[list[Hit]],
    report: VerifyReport,
    whole: bool,
) -> None:
    """Documents of ``route``'s index whose item is gone or that another route (or none) selects."""
    for hits in pages:
        read = _items_of_hits(sinks, table, route, key_types, hits, report, whole)
        for doc_id, (key, item) in read.items():
            try:
                belongs = document_in(route_item(table, item), route) is not None
            except PoisonRecordError:
                belongs = True  # the item is meant to be here; its content check reports it
            if not belongs:
                report.ghost.append(doc_id)
                report.typed_keys[doc_id] = key


def _read_states(
    sinks: Sinks, table: TableConfig, keys: Mapping[str, Mapping[str, Any]]
) -> dict[str, ReadState]:
    """Consistent reads of drifted keys, by document id."""
    found = sinks.items.read(table.name, list(keys.values()))
    return {doc_id: found[doc_id] for doc_id in keys}


def _repair_page(
    sinks: Sinks,
    table: TableConfig,
    doc_ids: Sequence[str],
    report: VerifyReport,
) -> None:
    """Read drifted items again and write each route's index from what the table holds."""
    routes = {route.index: route for route in table.resolved_routes}
    keys = {d: boto_key(report.typed_keys[d]) for d in doc_ids}
    refs = [(alias, d) for d in doc_ids for alias in routes]
    by_id = _read_states(sinks, table, keys)

    def reread(asked: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        ids = list(dict.fromkeys(ref[1] for ref in asked))  # one read per item, for all routes
        read = _read_states(sinks, table, {d: keys[d] for d in ids})
        return {ref: read[ref[1]] for ref in asked}

    result = _write(sinks, table, refs, RepairPlanner(table, by_id), reread, report)
    for doc_id in doc_ids:
        statuses = {result.status((alias, doc_id)) for alias in routes}
        if statuses == {Settled.SKIPPED}:
            report.left_to_stream += 1  # every index already holds a newer state
    cache_keys: set[str] = set()
    for doc_id in doc_ids:
        attributes = decode_item(lambda_key(report.typed_keys[doc_id]))
        item = by_id[doc_id].item
        indexed = [
            (route, attributes, document.fields)
            for alias, route in routes.items()
            if (document := result.observed.get((alias, doc_id))) is not None
        ]
        states = [(attributes, item)] if item is not None else []
        cache_keys |= render_cache_keys(table, states, indexed)
    sinks.cache.invalidate(cache_keys)


def _remove_strays(
    sinks: Sinks,
    table: TableConfig,
    strays: Sequence[DocumentRef],
    absent: Version,
    report: VerifyReport,
) -> None:
    """Tombstone stray documents, unless written after the scan that found no item for them."""
    routes = {route.index: route for route in table.resolved_routes}

    def reread(asked: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        return {ref: _NO_KEY for ref in asked}  # written during the verify: left alone

    result = _write(sinks, table, strays, StrayPlanner(table, absent), reread, report)
    report.left_to_stream += result.count(Settled.SKIPPED)
    cache_keys: set[str] = set()
    for alias, doc_id in strays:
        document = result.observed.get((alias, doc_id))
        if document is not None:
            indexed = [(routes[alias], document.fields, document.fields)]
            cache_keys |= render_cache_keys(table, (), indexed)
    sinks.cache.invalidate(cache_keys)


def _write(
    sinks: Sinks,
    table: TableConfig,
    refs: Sequence[DocumentRef],
    plan: Planner,
    reread: Rereader,
    report: VerifyReport,
) -> ApplyResult:
    """Write repairs through the search store and count what was repaired and what failed."""
    fields = {n for r in table.resolved_routes for n in table.route_table(r).cache_key_fields}
    options = WriteOptions(
        reread=reread,
        fields=tuple(sorted(fields)),
        refresh=bulk_refresh([table]),  # search cache keys: cleared once the repair is visible
    )
    result = write_documents(sinks.search, refs, plan, options)
    for ref, outcome in result.outcomes.items():
        if outcome.status in (Settled.WRITTEN, Settled.TOMBSTONED):
            report.repaired += 1
        elif outcome.status is not Settled.SKIPPED:
            report.unrepaired.append(f"{ref[0]}/{ref[1]}: {outcome.reason}")
    return result
