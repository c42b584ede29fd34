"""Run one batch: decode -> coalesce -> plan -> apply -> outcome. Handler, poller and tests call it."""

from __future__ import annotations

import functools
import gc
import logging
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from syncer.config import Config, TableConfig
from syncer.config.names import reindex_alias
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.consistency import percentile
from syncer.core.documents import DocumentRef, ReadState, Settled
from syncer.core.outcome import BatchOutcome, RecordAction, decide
from syncer.core.plan import bulk_refresh, old_image_fields, plan_cache_keys
from syncer.core.planners import ChangePlanner
from syncer.core.records import ChangeRecord, RejectedRecord, decode_records
from syncer.core.rounds import write_documents
from syncer.core.work import KeyWork, WrittenKeys
from syncer.core.writes import ApplyResult, WriteOptions
from syncer.errors import DownstreamUnavailableError, PoisonRecordError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Deadline, reported_failure

log = logging.getLogger(__name__)


def _read_items(works: Sequence[KeyWork], sinks: Sinks, deadline: Deadline | None) -> None:
    """Read the items of keys whose stream has no new image; a failure is kept per key."""
    wanted: dict[str, list[KeyWork]] = {}
    for work in works:
        if work.needs_item:
            wanted.setdefault(work.change.table, []).append(work)
    for table, table_works in wanted.items():
        read = _read_by_key(sinks, table, [w.change.latest for w in table_works], deadline)
        for work in table_works:
            if isinstance(read, str):
                work.read_error = read
            else:
                work.item, work.item_read = read[work.change.document_id].item, True


def _read_by_key(
    sinks: Sinks, table: str, records: Sequence[ChangeRecord], deadline: Deadline | None
) -> dict[str, ReadState] | str:
    """Consistent reads of the records' items by document id, or why they failed."""
    try:
        keys = [record.typed_keys for record in records]
        return sinks.items.read(table, keys, deadline, [r.document_id for r in records])
    except Exception as error:  # noqa: BLE001 - reported_failure re-raises bugs
        return reported_failure(error, f"reading items from {table}")


def _apply_to_search(
    works: Sequence[KeyWork],
    tables: Mapping[str, TableConfig],
    sinks: Sinks,
    deadline: Deadline | None,
) -> ApplyResult:
    """Write every change that is newer than its targets' states: the write rounds
    (``core.rounds.write_documents``: read, plan, send, conflicts read and planned again) run
    here over the search store, which only sends requests."""
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
    plan = ChangePlanner(works)
    options = WriteOptions(
        absent_first=_Inserts(plan),
        reread=functools.partial(_reread, plan, sinks, deadline),
        fields=tuple(fields),
        optional_aliases=optional,
        deadline=deadline,
        refresh=bulk_refresh(work.table for work in works),
        known=sinks.known,
    )
    result = write_documents(sinks.search, plan.refs, plan, options)
    for ref, outcome in result.outcomes.items():
        plan.work(ref).settle(ref, outcome)
    for ref, document in result.observed.items():
        plan.work(ref).observe(ref, document)
    return result


def _reread(
    plan: ChangePlanner, sinks: Sinks, deadline: Deadline | None, refs: Sequence[DocumentRef]
) -> dict[DocumentRef, ReadState | str]:
    """The items of ``refs`` read again from the table (a ``Rereader``), or why they failed."""
    by_table: dict[str, list[DocumentRef]] = {}
    for ref in refs:
        by_table.setdefault(plan.work(ref).change.table, []).append(ref)
    states: dict[DocumentRef, ReadState | str] = {}
    for table, table_refs in by_table.items():
        records = [plan.work(ref).change.latest for ref in table_refs]
        read = _read_by_key(sinks, table, records, deadline)
        for ref in table_refs:
            states[ref] = read if isinstance(read, str) else read[ref[1]]
    return states


class _Inserts:
    """The refs of keys whose newest change is an INSERT: written with ``create`` unread.

    An INSERT means the item did not exist before it; usually its document does not either, and
    a ``create`` (refused with a 409 when anything is there, then read and planned again as
    usual) needs no ``_mget`` first (docs/ordering.md). Asked of the batch's planner per ref,
    so no set of every ref is built.
    """

    __slots__ = ("_plan",)

    def __init__(self, plan: ChangePlanner) -> None:
        self._plan = plan

    def __contains__(self, ref: object) -> bool:
        work = self._plan.find(ref)
        # An uncertain key is read again whatever is indexed, and the read may find the item
        # gone: its indexed state must be read first, or a SKIP would leave it standing.
        return work is not None and work.change.latest.is_insert and not work.change.uncertain


def _invalidate_cache(
    works: Sequence[KeyWork], sinks: Sinks, deadline: Deadline | None
) -> str | None:
    """Invalidate every key's cache keys in one round trip; any error."""
    for work in works:
        work.cache_keys = frozenset(
            plan_cache_keys(work.change, work.table, [work.item], work.indexed or ())
        )
    keys = set().union(*(work.cache_keys for work in works))
    if not keys:
        return None
    try:
        sinks.cache.invalidate(keys, deadline)
    except Exception as error:  # noqa: BLE001 - reported_failure re-raises bugs
        return reported_failure(error, "Redis invalidation")
    return None


def _letters_for_key(work: KeyWork, cache_error: str | None) -> list[DeadLetter]:
    """The dead letters of one key's records, saying what failed and what the cache got."""
    rejected = work.rejected_reason
    keys = ", ".join(sorted(work.cache_keys)) or "none"
    if rejected is not None:
        error_class = "DocumentRejectedError"
        message = rejected
        if cache_error:
            message += f"; its cache keys were NOT invalidated ({cache_error}); cache keys: {keys}"
    else:
        error_class = "CacheInvalidationError"
        message = f"{cache_error}; cache keys: {keys}"
    return [
        DeadLetter(r.raw, r.table, error_class, message, r.sequence_text)
        for r in work.change.records
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
    A caller that keeps the outcome may hold the pause longer (the Lambda handler does, until it
    drops the outcome): turned on while the outcome still holds the batch's values, the
    collector would first walk them all (bench/RESULTS.md, section 2).
    """
    with cyclic_gc_paused():
        return _process_batch(raw_records, config, sinks, deadline)


def _process_batch(
    raw_records: Sequence[object],
    config: Config,
    sinks: Sinks,
    deadline: Deadline | None,
) -> BatchOutcome:
    guards = sinks.guards
    retries_before = sum(g.retries for g in guards)
    breaker_changes_before = sum(g.breaker_changes for g in guards)
    tables = {table.name: table for table in config.tables}
    # Only what syncer reads of an OldImage is decoded and checked (docs/operations.md).
    old_fields = {name: old_image_fields(table) for name, table in tables.items()}
    decoded, rejected = decode_records(raw_records, old_fields)
    for record in decoded:
        if record.image_error:  # a REMOVE still deletes from its Keys; say what was dropped
            log.warning("record %s: %s", record.sequence_text, record.image_error)
    ages_ms = _iterator_ages_ms(decoded)
    known: list[ChangeRecord] = []
    for record in decoded:
        if record.table in tables:
            known.append(record)
        else:
            error = PoisonRecordError(
                f"table {record.table!r} is not configured; add a [[tables]] entry for it"
            )
            rejected.append(RejectedRecord(record.raw, error, record.table, record.sequence_text))
    works = [KeyWork.start(c, tables[c.table]) for c in coalesce_latest_per_key(known)]

    _read_items(works, sinks, deadline)
    searchable = [work for work in works if work.searchable]
    for work in searchable:
        work.route()
    search = _apply_to_search(searchable, tables, sinks, deadline)
    cache_error = _invalidate_cache(works, sinks, deadline)

    failed: set[str] = set()
    letters = _letters_for_rejected(rejected)
    acknowledged: list[ChangeRecord] = []
    for work in works:
        action = decide(work.stages(cache_error is not None), config.redis.on_failure)
        if action is RecordAction.RETRY:
            failed.update(work.change.sequence_texts)
        elif action is RecordAction.DEADLETTER:
            letters.extend(_letters_for_key(work, cache_error))
        else:
            acknowledged.extend(work.change.records)
    dead_lettered = _write_dead_letters(letters, sinks, deadline, failed)
    all_cache_keys = set().union(*(work.cache_keys for work in works))
    settled = [work.settled for work in works]
    fresh_ms = _iterator_ages_ms(acknowledged)  # now: search written, keys invalidated
    outcome = BatchOutcome(
        records_in=len(raw_records),
        keys=len(works),
        indexed=settled.count(Settled.WRITTEN),
        deleted=settled.count(Settled.TOMBSTONED),
        skipped_stale=settled.count(Settled.SKIPPED),
        unrouted=sum(1 for work in works if work.unrouted),
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
        known_states_used=search.known,
        known_states_stale=search.known_stale,
        written=WrittenKeys(
            work
            for work, status in zip(works, settled, strict=True)
            if status in (Settled.WRITTEN, Settled.TOMBSTONED)
        ),
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
        sinks.letters.write(letters, deadline)
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
