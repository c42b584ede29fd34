"""Run one batch: decode -> coalesce -> plan -> apply -> outcome. Handler, poller and tests call it."""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from syncer.config import Config, Route, TableConfig
from syncer.core.coalesce import KeyChange, coalesce_latest_per_key
from syncer.core.consistency import WrittenKey, percentile
from syncer.core.documents import DocumentRef, ReadState, Settled, TargetState
from syncer.core.outcome import BatchOutcome, KeyStages, RecordAction, decide, worst
from syncer.core.plan import (
    bulk_refresh,
    plan_cache_keys,
    plan_document_write,
    plan_routed_cache_keys,
    plan_routed_write,
)
from syncer.core.records import ChangeRecord, RejectedRecord, decode_records
from syncer.core.routes import GONE, Routed, document_in, route_item
from syncer.core.versions import Version
from syncer.errors import DownstreamUnavailableError, PoisonRecordError
from syncer.sinks.cache import invalidate
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Deadline, reported_failure
from syncer.sinks.search import ApplyResult, apply_writes, reindex_alias

log = logging.getLogger(__name__)


def _ref(change: KeyChange, tables: Mapping[str, TableConfig]) -> DocumentRef:
    """The change's first target: where its counts and its cache keys are filed."""
    return (tables[change.table].resolved_routes[0].index, change.document_id)


def _lookup_items(
    changes: Sequence[KeyChange], sinks: Sinks, deadline: Deadline | None
) -> tuple[dict[tuple[str, str], Mapping[str, Any] | None], dict[tuple[str, str], str]]:
    """Current items for changes whose stream has no new image; failures by (table, id)."""
    wanted: dict[str, list[ChangeRecord]] = {}
    for change in changes:
        if change.latest.needs_item_lookup:
            wanted.setdefault(change.table, []).append(change.latest)
    items: dict[tuple[str, str], Mapping[str, Any] | None] = {}
    failed: dict[tuple[str, str], str] = {}
    for table, records in wanted.items():
        read = _read_items(sinks, table, records, deadline)
        if isinstance(read, str):
            failed.update({(table, r.document_id): read for r in records})
            continue
        items.update({(table, doc_id): state.item for doc_id, state in read.items()})
    return items, failed


def _read_items(
    sinks: Sinks, table: str, records: Sequence[ChangeRecord], deadline: Deadline | None
) -> dict[str, ReadState] | str:
    """Consistent reads of the records' items by document id, or why they failed."""
    try:
        if sinks.dynamodb is None:
            raise DownstreamUnavailableError("no DynamoDB client to read items")
        keys = [record.raw["dynamodb"]["Keys"] for record in records]
        return sinks.items.read(table, keys, deadline)
    except Exception as error:  # noqa: BLE001 - reported_failure re-raises bugs
        return reported_failure(error, f"reading items from {table}")


def _target_refs(change: KeyChange, tables: Mapping[str, TableConfig]) -> tuple[DocumentRef, ...]:
    """Where a change is written: each route's alias, and its reindex target if one exists.

    A table without routes has one: its own index. A routed table's change goes to every
    route's index, a document where its state belongs and a tombstone elsewhere (docs/routes.md).
    """
    doc_id = change.document_id
    return tuple(
        ref
        for route in tables[change.table].resolved_routes
        for ref in ((route.index, doc_id), (reindex_alias(route.index), doc_id))
    )


def _routes_by_alias(
    tables: Mapping[str, TableConfig],
) -> dict[tuple[str, str], tuple[Route, TableConfig]]:
    """(table, alias or reindex alias) -> the route whose index it is and its one-index table."""
    return {
        (table.name, alias): (route, table.route_table(route))
        for table in tables.values()
        if table.routes
        for route in table.resolved_routes
        for alias in (route.index, reindex_alias(route.index))
    }


def _state_item(
    change: KeyChange, items: Mapping[tuple[str, str], Mapping[str, Any] | None]
) -> Mapping[str, Any] | None:
    """The item as the change leaves it: its new image, or the item read; None when gone."""
    latest = change.latest
    if latest.is_remove:
        return None
    if latest.new_image is not None:
        return latest.new_image
    return items.get((change.table, change.document_id))


def _route_changes(
    changes: Sequence[KeyChange],
    tables: Mapping[str, TableConfig],
    items: Mapping[tuple[str, str], Mapping[str, Any] | None],
) -> dict[tuple[str, str], Routed]:
    """Route (and transform, once) the state each routed table's change leaves its item in."""
    return {
        (change.table, change.document_id): route_item(
            tables[change.table], _state_item(change, items)
        )
        for change in changes
        if tables[change.table].routes
    }


def _apply_to_search(
    changes: Sequence[KeyChange],
    tables: Mapping[str, TableConfig],
    items: Mapping[tuple[str, str], Mapping[str, Any] | None],
    routed: Mapping[tuple[str, str], Routed],
    sinks: Sinks,
    config: Config,
    deadline: Deadline | None,
) -> ApplyResult:
    """Write every change that is newer than its targets' states, through ``apply_writes``."""
    by_ref = {ref: change for change in changes for ref in _target_refs(change, tables)}
    optional = frozenset(
        reindex_alias(route.index) for table in tables.values() for route in table.resolved_routes
    )
    fields = sorted(
        {
            name
            for table in tables.values()
            for route in table.resolved_routes
            for name in table.route_table(route).cache_key_fields
        }
    )
    routes = _routes_by_alias(tables)
    reread_routed: dict[tuple[str, str, Version], Routed] = {}

    def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Any:
        change = by_ref[ref]
        table = tables[change.table]
        key = (change.table, change.document_id)
        if not table.routes:
            return plan_document_write(change, table, target, items.get(key), read)
        if read is None:
            state = routed.get(key, GONE)
        else:  # the re-read item is routed (and transformed) once for all its refs
            memo = (change.table, change.document_id, read.version)
            if memo not in reread_routed:
                reread_routed[memo] = route_item(table, read.item)
            state = reread_routed[memo]
        route, route_table = routes[(table.name, ref[0])]
        document = document_in(state, route)  # PoisonRecordError: the ref is rejected
        return plan_routed_write(change, route_table, document, target, read)

    def reread(refs: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        by_table: dict[str, list[DocumentRef]] = {}
        for ref in refs:
            by_table.setdefault(by_ref[ref].table, []).append(ref)
        states: dict[DocumentRef, ReadState | str] = {}
        for table, table_refs in by_table.items():
            read = _read_items(sinks, table, [by_ref[ref].latest for ref in table_refs], deadline)
            for ref in table_refs:
                states[ref] = read if isinstance(read, str) else read[ref[1]]
        return states

    return apply_writes(
        sinks.opensearch,
        sinks.opensearch_guard,
        list(by_ref),
        plan,
        config.opensearch,
        reread=reread,
        fields=fields,
        optional_aliases=optional,
        deadline=deadline,
        refresh=bulk_refresh(tables[change.table] for change in changes),
    )


def _invalidate_cache(
    changes: Sequence[KeyChange],
    tables: Mapping[str, TableConfig],
    before: Mapping[DocumentRef, Any],
    items: Mapping[tuple[str, str], Mapping[str, Any] | None],
    sinks: Sinks,
    deadline: Deadline | None,
) -> tuple[dict[DocumentRef, set[str]], str | None]:
    """Invalidate every change's cache keys in one round trip; the keys by change, and any error."""
    keys_by_ref: dict[DocumentRef, set[str]] = {}
    for change in changes:
        ref = _ref(change, tables)
        table = tables[change.table]
        fetched = items.get((change.table, change.document_id))
        if table.routes:
            indexed_docs = [
                (route, document.fields)
                for route in table.resolved_routes
                if (document := before.get((route.index, change.document_id))) is not None
            ]
            keys_by_ref[ref] = plan_routed_cache_keys(change, table, indexed_docs, fetched)
            continue
        indexed = before.get(ref)
        extra = [indexed.fields if indexed is not None else None, fetched]
        keys_by_ref[ref] = plan_cache_keys(change, table, extra)
    keys = set().union(*keys_by_ref.values())
    if not keys:
        return keys_by_ref, None
    try:
        sinks.redis_guard.call_with_retry(invalidate, sinks.redis, keys, deadline=deadline)
    except Exception as error:  # noqa: BLE001 - reported_failure re-raises bugs
        return keys_by_ref, reported_failure(error, "Redis invalidation")
    return keys_by_ref, None


def _letters_for_change(
    change: KeyChange,
    refs: Sequence[DocumentRef],
    search: ApplyResult,
    cache_keys: Mapping[DocumentRef, set[str]],
    cache_error: str | None,
) -> list[DeadLetter]:
    """The dead letters of one key's records, saying what failed and what the cache got."""
    rejected = next(
        (search.outcomes[r].reason for r in refs if search.status(r) is Settled.REJECTED), None
    )
    keys = ", ".join(sorted(cache_keys.get(refs[0], ()))) or "none"
    if rejected is not None:
        error_class = "DocumentRejectedError"
        message = rejected
        if cache_error:
            message += f"; its cache keys were NOT invalidated ({cache_error}); cache keys: {keys}"
    else:
        error_class = "CacheInvalidationError"
        message = f"{cache_error}; cache keys: {keys}"
    return [
        DeadLetter(r.raw, r.table, error_class, message, r.sequence_text) for r in change.records
    ]


def _letters_for_rejected(rejected: Sequence[RejectedRecord]) -> list[DeadLetter]:
    return [
        DeadLetter(r.raw, r.table, type(r.error).__name__, str(r.error), r.sequence_text)
        for r in rejected
    ]


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Hold off CPython's cycle collector; a collector someone else disabled stays disabled."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def process_batch(
    raw_records: Sequence[object],
    config: Config,
    sinks: Sinks,
    deadline: Deadline | None = None,
) -> BatchOutcome:
    """Apply one batch of stream records and say which records must be retried.

    The cycle collector is held off for the batch: a batch builds tens of thousands of acyclic
    containers, and full collections over them took a third of the CPU path (bench/RESULTS.md).
    The few cycles a batch makes (exceptions and their tracebacks) wait for the next collection.
    """
    with cyclic_gc_paused():
        return _process_batch(raw_records, config, sinks, deadline)


def _process_batch(
    raw_records: Sequence[object],
    config: Config,
    sinks: Sinks,
    deadline: Deadline | None,
) -> BatchOutcome:
    guards = (
        sinks.opensearch_guard,
        sinks.redis_guard,
        sinks.dynamodb_guard,
        sinks.deadletter_guard,
    )
    retries_before = sum(g.retries for g in guards)
    breaker_changes_before = sum(g.breaker_changes for g in guards)
    decoded, rejected = decode_records(raw_records)
    for record in decoded:
        if record.image_error:  # a REMOVE still deletes from its Keys; say what was dropped
            log.warning("record %s: %s", record.sequence_text, record.image_error)
    ages_ms = _iterator_ages_ms(decoded)
    tables = {table.name: table for table in config.tables}
    known: list[ChangeRecord] = []
    for record in decoded:
        if record.table in tables:
            known.append(record)
        else:
            error = PoisonRecordError(
                f"table {record.table!r} is not configured; add a [[tables]] entry for it"
            )
            rejected.append(RejectedRecord(record.raw, error, record.table, record.sequence_text))
    changes = coalesce_latest_per_key(known)

    items, lookup_failed = _lookup_items(changes, sinks, deadline)
    searchable = [c for c in changes if (c.table, c.document_id) not in lookup_failed]
    routed = _route_changes(searchable, tables, items)
    search = _apply_to_search(searchable, tables, items, routed, sinks, config, deadline)
    cache_keys, cache_error = _invalidate_cache(
        changes, tables, search.observed, items, sinks, deadline
    )

    failed: set[str] = set()
    letters = _letters_for_rejected(rejected)
    acknowledged: list[ChangeRecord] = []
    for change in changes:
        refs = _target_refs(change, tables)
        lookup_reason = lookup_failed.get((change.table, change.document_id))
        stages = KeyStages(
            lookup_failed=lookup_reason is not None,
            search=None if lookup_reason else worst([search.status(r) for r in refs]),
            cache_failed=cache_error is not None,
        )
        action = decide(stages, config.redis.on_failure)
        if action is RecordAction.RETRY:
            failed.update(change.sequence_texts)
        elif action is RecordAction.DEADLETTER:
            letters.extend(_letters_for_change(change, refs, search, cache_keys, cache_error))
        else:
            acknowledged.extend(change.records)
    dead_lettered = _write_dead_letters(letters, sinks, deadline, failed)
    all_cache_keys = set().union(*cache_keys.values())
    settled = [_settled(c, tables, routed, items, search) for c in changes]
    fresh_ms = _iterator_ages_ms(acknowledged)  # now: search written, keys invalidated
    outcome = BatchOutcome(
        records_in=len(raw_records),
        keys=len(changes),
        indexed=settled.count(Settled.WRITTEN),
        deleted=settled.count(Settled.TOMBSTONED),
        skipped_stale=settled.count(Settled.SKIPPED),
        unrouted=sum(1 for c in changes if _unrouted(c, routed, items)),
        invalidated=0 if cache_error else len(all_cache_keys),
        dead_lettered=dead_lettered,
        failed_sequence_numbers=tuple(sorted(failed, key=int)),
        cache_keys=tuple(sorted(all_cache_keys)),
        retries=sum(g.retries for g in guards) - retries_before,
        breaker_changes=sum(g.breaker_changes for g in guards) - breaker_changes_before,
        iterator_age_ms_max=max(ages_ms, default=0.0),
        iterator_age_ms_median=statistics.median(ages_ms) if ages_ms else 0.0,
        bulk_latency_ms=search.bulk_seconds * 1000,
        freshness_ms_p50=percentile(fresh_ms, 0.5),
        freshness_ms_p99=percentile(fresh_ms, 0.99),
        written=_written_keys(changes, settled, tables, routed, items, cache_keys),
    )
    log.info("batch done", extra={"batch": outcome.counts()})
    return outcome


def _unrouted(
    change: KeyChange,
    routed: Mapping[tuple[str, str], Routed],
    items: Mapping[tuple[str, str], Mapping[str, Any] | None],
) -> bool:
    """An item of a routed table that exists but no route selects: skipped, acknowledged."""
    state = routed.get((change.table, change.document_id))
    return state is not None and state.route is None and _state_item(change, items) is not None


def _settled(
    change: KeyChange,
    tables: Mapping[str, TableConfig],
    routed: Mapping[tuple[str, str], Routed],
    items: Mapping[tuple[str, str], Mapping[str, Any] | None],
    search: ApplyResult,
) -> Settled | None:
    """How a change ended for the counts: in the index of the route its state selects."""
    if _unrouted(change, routed, items):
        return None
    state = routed.get((change.table, change.document_id))
    if state is None or state.route is None:
        return search.status(_ref(change, tables))
    return search.status((state.route.index, change.document_id))


def _written_keys(
    changes: Sequence[KeyChange],
    settled: Sequence[Settled | None],
    tables: Mapping[str, TableConfig],
    routed: Mapping[tuple[str, str], Routed],
    items: Mapping[tuple[str, str], Mapping[str, Any] | None],
    cache_keys: Mapping[DocumentRef, set[str]],
) -> tuple[WrittenKey, ...]:
    """The keys written or tombstoned, each with the version and state its write carried."""
    written = []
    for change, status in zip(changes, settled, strict=True):
        if status not in (Settled.WRITTEN, Settled.TOMBSTONED):
            continue
        ref = _ref(change, tables)
        state = routed.get((change.table, change.document_id))
        document: Mapping[str, Any] | None = _state_item(change, items)
        if state is not None and state.route is not None:
            ref, document = (state.route.index, ref[1]), document_in(state, state.route)
        keys = change.latest.raw["dynamodb"]["Keys"]
        written.append(
            WrittenKey(
                change.table,
                ref[0],
                ref[1],
                keys,
                change.latest.version,
                document if status is Settled.WRITTEN else None,
                tuple(sorted(cache_keys.get(_ref(change, tables), ()))),
            )
        )
    return tuple(written)


def _iterator_ages_ms(records: Sequence[ChangeRecord]) -> list[float]:
    """How far behind each record is: now minus its ApproximateCreationDateTime."""
    now = time.time()
    return [
        max(0.0, (now - r.approximate_creation_s) * 1000)
        for r in records
        if r.approximate_creation_s is not None
    ]


def _write_dead_letters(
    letters: Sequence[DeadLetter], sinks: Sinks, deadline: Deadline | None, failed: set[str]
) -> int:
    """Write letters durably; if that fails they are reported, never dropped."""
    if not letters:
        return 0
    try:
        sinks.deadletter_guard.call_with_retry(sinks.deadletters.write, letters, deadline=deadline)
    except Exception as error:
        reported_failure(error, "dead-letter write")
        if any(letter.sequence_text is None for letter in letters):
            raise DownstreamUnavailableError(
                "a record without a usable SequenceNumber could not be dead-lettered; "
                "failing the whole batch so Lambda retries it"
            ) from error
        failed.update(letter.sequence_text for letter in letters if letter.sequence_text)
        return 0
    return len(letters)
