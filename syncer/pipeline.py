"""Run one batch: decode -> coalesce -> plan -> apply -> outcome. Handler, poller and tests call it."""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from syncer.cache import invalidate
from syncer.coalesce import KeyChange, coalesce_latest_per_key
from syncer.config import Config, OpenSearchConfig, TableConfig
from syncer.deadletter import DeadLetter, DeadLetterSink
from syncer.errors import DownstreamUnavailableError, PoisonRecordError
from syncer.lookup import read_current_items
from syncer.plan import bulk_refresh, plan_cache_keys, plan_document_write
from syncer.records import ChangeRecord, RejectedRecord, decode_records
from syncer.resilience import Deadline, Downstream, PendingItemsError, classify
from syncer.search import (
    DocumentRef,
    DocumentWrite,
    ItemStatus,
    WriteKind,
    alias_exists,
    bulk_chunks,
    read_targets,
    reindex_alias,
    send_bulk,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Sinks:
    """The I/O edges of the pipeline: clients and the downstream guard of each."""

    opensearch: Any
    redis: Any
    dynamodb: Any  # None only in tests that never read items
    deadletters: DeadLetterSink
    opensearch_guard: Downstream
    redis_guard: Downstream
    dynamodb_guard: Downstream
    deadletter_guard: Downstream


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch did; ``failed_sequence_numbers`` are what Lambda must retry from."""

    records_in: int
    keys: int
    indexed: int
    deleted: int
    skipped_stale: int
    invalidated: int
    dead_lettered: int
    failed_sequence_numbers: tuple[str, ...]
    cache_keys: tuple[str, ...] = ()
    retries: int = 0
    breaker_changes: int = 0
    iterator_age_ms_max: float = 0.0
    iterator_age_ms_median: float = 0.0
    bulk_latency_ms: float = 0.0

    def lambda_response(self) -> dict[str, list[dict[str, str]]]:
        """The partial batch response Lambda documents; empty only when all is durable."""
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failed_sequence_numbers]}

    def counts(self) -> dict[str, int | float]:
        """The batch's figures for logs and metrics: counts only, never item contents."""
        return {
            "records_in": self.records_in,
            "keys": self.keys,
            "indexed": self.indexed,
            "deleted": self.deleted,
            "skipped_stale": self.skipped_stale,
            "invalidated": self.invalidated,
            "dead_lettered": self.dead_lettered,
            "failed": len(self.failed_sequence_numbers),
            "retries": self.retries,
            "breaker_changes": self.breaker_changes,
            "iterator_age_ms_max": round(self.iterator_age_ms_max, 1),
            "iterator_age_ms_median": round(self.iterator_age_ms_median, 1),
            "bulk_latency_ms": round(self.bulk_latency_ms, 1),
        }


@dataclass(slots=True)
class _SearchResults:
    indexed: set[DocumentRef] = field(default_factory=set)
    deleted: set[DocumentRef] = field(default_factory=set)
    skipped: set[DocumentRef] = field(default_factory=set)
    permanent: dict[DocumentRef, str] = field(default_factory=dict)
    failed: dict[DocumentRef, str] = field(default_factory=dict)
    bulk_seconds: float = 0.0
    before: dict[DocumentRef, Mapping[str, Any]] = field(default_factory=dict)

    def settled(self, ref: DocumentRef) -> bool:
        return (
            ref in self.indexed
            or ref in self.deleted
            or ref in self.skipped
            or ref in self.permanent
        )


def _ref(change: KeyChange, tables: Mapping[str, TableConfig]) -> DocumentRef:
    return (tables[change.table].index, change.document_id)


def _lookup_items(
    changes: Sequence[KeyChange], sinks: Sinks, deadline: Deadline | None
) -> tuple[dict[tuple[str, str], dict[str, Any] | None], dict[tuple[str, str], str]]:
    """Current items for changes whose stream has no new image; failures by (table, id)."""
    wanted: dict[str, list[ChangeRecord]] = {}
    for change in changes:
        if change.latest.needs_item_lookup:
            wanted.setdefault(change.table, []).append(change.latest)
    items: dict[tuple[str, str], dict[str, Any] | None] = {}
    failed: dict[tuple[str, str], str] = {}
    for table, records in wanted.items():
        try:
            if sinks.dynamodb is None:
                raise DownstreamUnavailableError(
                    "no DynamoDB client to read KEYS_ONLY/OLD_IMAGE items"
                )
            found = read_current_items(
                sinks.dynamodb, sinks.dynamodb_guard, table, records, deadline
            )
        except Exception as error:  # noqa: BLE001 - every failure becomes a reported record
            reason = f"reading items from {table} failed ({classify(error).value}): {error}"
            log.error(reason)
            failed.update({(table, r.document_id): reason for r in records})
            continue
        items.update({(table, doc_id): item for doc_id, item in found.items()})
    return items, failed


def _target_refs(change: KeyChange, tables: Mapping[str, TableConfig]) -> tuple[DocumentRef, ...]:
    """Where a change is written: the table's alias, and the reindex target if one exists."""
    alias = tables[change.table].index
    return ((alias, change.document_id), (reindex_alias(alias), change.document_id))


def _apply_to_search(
    changes: Sequence[KeyChange],
    tables: Mapping[str, TableConfig],
    items: Mapping[tuple[str, str], dict[str, Any] | None],
    sinks: Sinks,
    config: Config,
    deadline: Deadline | None,
) -> _SearchResults:
    """Read every target's state, write what is newer, repeat for conflicts and transient items."""
    results = _SearchResults()
    by_ref = {ref: change for change in changes for ref in _target_refs(change, tables)}
    optional = frozenset(reindex_alias(table.index) for table in tables.values())
    fields = sorted({name for table in tables.values() for name in table.cache_key_fields})
    guard = sinks.opensearch_guard
    limits = config.opensearch
    refresh = bulk_refresh(tables[change.table] for change in changes)
    try:
        for attempt in guard.retrying(deadline):
            with attempt:
                # A reindex target is written only while its alias exists. Asking once per
                # table keeps its ids out of the _mget when none does (the usual case).
                running = {a for a in optional if guard.call(alias_exists, sinks.opensearch, a)}
                results.skipped.update(
                    ref for ref in by_ref if ref[0] in optional and ref[0] not in running
                )
                pending = [ref for ref in by_ref if not results.settled(ref)]
                targets = guard.call(read_targets, sinks.opensearch, pending, fields, optional)
                writes: dict[DocumentRef, tuple[DocumentWrite, list[DocumentRef]]] = {}
                for ref in pending:
                    change = by_ref[ref]
                    target = targets.get(ref)
                    if target is None:  # no reindex running: nothing to write there
                        results.skipped.add(ref)
                        continue
                    if target.document is not None:
                        results.before.setdefault(ref, target.document.fields)
                    concrete = (target.index, change.document_id)
                    if concrete in writes:  # two aliases on one index: one write serves both
                        writes[concrete][1].append(ref)
                        continue
                    try:
                        item = items.get((change.table, change.document_id))
                        table = tables[change.table]
                        write = plan_document_write(
                            change, table, target.document, item, target.index
                        )
                    except PoisonRecordError as error:
                        results.permanent[ref] = str(error)
                        continue
                    if write is None:
                        results.skipped.add(ref)
                    else:
                        writes[concrete] = (write, [ref])
                reasons = _send_writes(writes, sinks, limits, results, refresh)
                left = sum(1 for ref in by_ref if not results.settled(ref))
                if left:
                    raise PendingItemsError(left, reasons[0] if reasons else "conflicts")
    except Exception as error:  # noqa: BLE001 - every failure becomes a reported record
        reason = f"OpenSearch write failed ({classify(error).value}): {error}"
        log.error(reason)
        for ref in by_ref:
            if not results.settled(ref):
                results.failed[ref] = reason
    return results


def _send_writes(
    writes: Mapping[DocumentRef, tuple[DocumentWrite, list[DocumentRef]]],
    sinks: Sinks,
    limits: OpenSearchConfig,
    results: _SearchResults,
    refresh: str | None = None,
) -> list[str]:
    """Send the writes in ``_bulk`` chunks; settle refs by item result; return retry reasons."""
    reasons: list[str] = []
    planned = [write for write, _ in writes.values()]
    unencodable: list[tuple[DocumentWrite, str]] = []
    chunks = bulk_chunks(planned, limits.bulk_max_actions, limits.bulk_max_bytes, unencodable)
    for chunk, body in chunks:
        started = time.perf_counter()
        try:
            item_results = sinks.opensearch_guard.call(
                send_bulk, sinks.opensearch, body, chunk, refresh
            )
        finally:
            results.bulk_seconds += time.perf_counter() - started
        for write in chunk:
            result = item_results[write.ref]
            for ref in writes[write.ref][1]:
                if result.status is ItemStatus.OK:
                    tombstone = write.kind is WriteKind.TOMBSTONE
                    (results.deleted if tombstone else results.indexed).add(ref)
                elif result.status is ItemStatus.PERMANENT:
                    results.permanent[ref] = f"OpenSearch rejected the document: {result.reason}"
                else:
                    reasons.append(result.reason)
    for write, reason in unencodable:
        for ref in writes[write.ref][1]:
            results.permanent[ref] = reason
    return reasons


def _invalidate_cache(
    changes: Sequence[KeyChange],
    tables: Mapping[str, TableConfig],
    before: Mapping[DocumentRef, Mapping[str, Any]],
    items: Mapping[tuple[str, str], dict[str, Any] | None],
    sinks: Sinks,
    deadline: Deadline | None,
) -> tuple[dict[DocumentRef, set[str]], str | None]:
    """Invalidate every change's cache keys in one round trip; the keys by change, and any error."""
    keys_by_ref: dict[DocumentRef, set[str]] = {}
    for change in changes:
        ref = _ref(change, tables)
        extra = [before.get(ref), items.get((change.table, change.document_id))]
        keys_by_ref[ref] = plan_cache_keys(change, tables[change.table], extra)
    keys = set().union(*keys_by_ref.values())
    if not keys:
        return keys_by_ref, None
    try:
        sinks.redis_guard.call_with_retry(invalidate, sinks.redis, keys, deadline=deadline)
    except Exception as error:  # noqa: BLE001 - every failure becomes a reported record
        reason = f"Redis invalidation failed ({classify(error).value}): {error}"
        log.error(reason)
        return keys_by_ref, reason
    return keys_by_ref, None


def _letters(change: KeyChange, error_class: str, message: str) -> list[DeadLetter]:
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
    search = _apply_to_search(searchable, tables, items, sinks, config, deadline)
    cache_keys, cache_error = _invalidate_cache(
        changes, tables, search.before, items, sinks, deadline
    )

    failed: set[str] = set()
    letters = _letters_for_rejected(rejected)
    for change in changes:
        refs = _target_refs(change, tables)
        rejected_by = next((search.permanent[r] for r in refs if r in search.permanent), None)
        if (change.table, change.document_id) in lookup_failed or any(
            r in search.failed for r in refs
        ):
            failed.update(change.sequence_texts)
        elif rejected_by is not None:
            letters.extend(_letters(change, "DocumentRejectedError", rejected_by))
        elif cache_error and config.redis.on_failure == "deadletter":
            keys = ", ".join(sorted(cache_keys[refs[0]]))
            letters.extend(
                _letters(change, "CacheInvalidationError", f"{cache_error}; cache keys: {keys}")
            )
        elif cache_error:
            failed.update(change.sequence_texts)
    dead_lettered = _write_dead_letters(letters, sinks, deadline, failed)
    all_cache_keys = set().union(*cache_keys.values())
    outcome = BatchOutcome(
        records_in=len(raw_records),
        keys=len(changes),
        indexed=sum(1 for c in changes if _ref(c, tables) in search.indexed),
        deleted=sum(1 for c in changes if _ref(c, tables) in search.deleted),
        skipped_stale=sum(1 for c in changes if _ref(c, tables) in search.skipped),
        invalidated=0 if cache_error else len(all_cache_keys),
        dead_lettered=dead_lettered,
        failed_sequence_numbers=tuple(sorted(failed, key=int)),
        cache_keys=tuple(sorted(all_cache_keys)),
        retries=sum(g.retries for g in guards) - retries_before,
        breaker_changes=sum(g.breaker_changes for g in guards) - breaker_changes_before,
        iterator_age_ms_max=max(ages_ms, default=0.0),
        iterator_age_ms_median=statistics.median(ages_ms) if ages_ms else 0.0,
        bulk_latency_ms=search.bulk_seconds * 1000,
    )
    log.info("batch done", extra={"batch": outcome.counts()})
    return outcome


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
        log.error("dead-letter write failed (%s): %s", classify(error).value, error)
        if any(letter.sequence_text is None for letter in letters):
            raise DownstreamUnavailableError(
                "a record without a usable SequenceNumber could not be dead-lettered; "
                "failing the whole batch so Lambda retries it"
            ) from error
        failed.update(letter.sequence_text for letter in letters if letter.sequence_text)
        return 0
    return len(letters)
