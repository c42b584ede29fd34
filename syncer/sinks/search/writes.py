"""``apply_writes``: read, plan, write conditionally, settle every item (docs/ordering.md).

Each document carries its version in ``_syncer`` (``syncer.core.versions``). A write is sent only
when the planner finds it newer than the indexed state, and it is conditional on the document not
having changed since it was read (``if_seq_no`` and ``if_primary_term``, or ``create`` when
absent). Deletes write tombstones, never real deletes, so an older change can never bring a
deleted item back; the alias filters tombstones out. Every ``_bulk`` item's result is read.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncer.config import OpenSearchConfig
from syncer.core.documents import (
    Decision,
    DocumentRef,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.errors import PoisonRecordError
from syncer.sinks.resilience import Deadline, Downstream, PendingItemsError, reported_failure
from syncer.sinks.search.bulk import ItemStatus, bulk_chunks, send_bulk
from syncer.sinks.search.targets import read_round

if TYPE_CHECKING:
    from opensearchpy import OpenSearch


_SETTLED_BY_KIND = {
    WriteKind.INDEX: Settled.WRITTEN,
    WriteKind.TOMBSTONE: Settled.TOMBSTONED,
    WriteKind.DELETE: Settled.DELETED,
}


@dataclass(frozen=True, slots=True)
class RefOutcome:
    status: Settled
    reason: str = ""


@dataclass(slots=True)
class ApplyResult:
    """One outcome per ref, the first indexed state seen per ref, and what it cost."""

    outcomes: dict[DocumentRef, RefOutcome] = field(default_factory=dict)
    observed: dict[DocumentRef, IndexedDocument] = field(default_factory=dict)
    bulk_seconds: float = 0.0
    rereads: int = 0

    def count(self, status: Settled) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome.status is status)

    def status(self, ref: DocumentRef) -> Settled | None:
        outcome = self.outcomes.get(ref)
        return None if outcome is None else outcome.status

    def _settle(self, ref: DocumentRef, status: Settled, reason: str = "") -> None:
        self.outcomes[ref] = RefOutcome(status, reason)


Planner = Callable[[DocumentRef, TargetState, ReadState | None], Decision]
Rereader = Callable[[Sequence[DocumentRef]], Mapping[DocumentRef, ReadState | str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOptions:
    """How ``write_documents`` goes about one call; every field has the usual default.

    ``reread`` answers ``Verdict.REREAD`` with the item as the table holds it now; ``fields``
    are read back with ``_syncer`` (for cache keys); refs of ``optional_aliases`` that do not
    exist are skipped; ``read_first=False`` assumes absence in the first round (a scan into a
    new index); ``refresh`` goes with every ``_bulk``; ``replan_conflicts=False`` settles a
    409 as ``CONFLICT`` instead of planning again; ``require_alias`` writes only through refs
    that are aliases (a rebuild's: a dropped index never comes back by name).
    """

    reread: Rereader | None = None
    fields: tuple[str, ...] = ()
    optional_aliases: frozenset[str] = frozenset()
    deadline: Deadline | None = None
    read_first: bool = True
    refresh: str | None = None
    replan_conflicts: bool = True
    require_alias: bool = False


def apply_writes(
    client: OpenSearch,
    guard: Downstream,
    refs: Sequence[DocumentRef],
    plan: Planner,
    limits: OpenSearchConfig,
    **options: Any,
) -> ApplyResult:
    """``write_documents`` with ``WriteOptions``' fields as keywords (kept for its callers)."""
    if "fields" in options:
        options["fields"] = tuple(options["fields"])
    return write_documents(client, guard, limits, refs, plan, WriteOptions(**options))


def write_documents(
    client: OpenSearch,
    guard: Downstream,
    limits: OpenSearchConfig,
    refs: Sequence[DocumentRef],
    plan: Planner,
    options: WriteOptions,
) -> ApplyResult:
    """The one way syncer writes documents: read, plan, write conditionally, settle every item.

    Each round reads the unsettled refs' current state (``_mget``; the first round may assume
    absence with ``read_first=False``, as a scan into a new index does), asks ``plan`` for a
    conditional write, sends the writes in ``_bulk`` chunks and reads every item's result. A
    version conflict (409) re-plans the ref against what is there now (or settles it as
    ``CONFLICT`` when ``replan_conflicts`` is off); a transient item is sent again; a permanent
    one is ``REJECTED``. ``Verdict.REREAD`` asks ``reread`` for the item as the table holds it
    now and plans once more with it. Refs whose alias is optional and absent are ``SKIPPED``.
    Rounds are bounded by the guard's retry policy and ``deadline``; what is left then is
    ``FAILED`` with the reason. Errors no table knows (bugs) propagate.
    """
    deadline = options.deadline
    result = ApplyResult()
    pending = list(dict.fromkeys(refs))
    if not pending:
        return result
    first_round = True
    try:
        for attempt in guard.retrying(deadline):
            with attempt:
                pending = [ref for ref in pending if ref not in result.outcomes]
                targets = guard.call(
                    read_round,
                    client,
                    pending,
                    options.fields,
                    options.optional_aliases,
                    _cap(limits, deadline),
                    read=options.read_first or not first_round,
                )
                first_round = False
                pending = _skip_absent_optional(pending, targets, result)
                writes = _plan_round(
                    pending, targets, plan, options.reread, result, options.require_alias
                )
                reasons = _send_writes(client, guard, writes, limits, result, options)
                if not options.replan_conflicts:
                    for ref, reason in reasons.conflicts:
                        result._settle(ref, Settled.CONFLICT, reason)
                left = sum(1 for ref in pending if ref not in result.outcomes)
                if left:
                    why = reasons.transient[0] if reasons.transient else "version conflicts"
                    raise PendingItemsError(left, why)
    except Exception as error:  # noqa: BLE001 - reported_failure re-raises bugs
        reason = reported_failure(error, "OpenSearch write")
        for ref in pending:
            if ref not in result.outcomes:
                result._settle(ref, Settled.FAILED, reason)
    return result


def _cap(limits: OpenSearchConfig, deadline: Deadline | None) -> float | None:
    return None if deadline is None else deadline.request_timeout(limits.timeout_s)


def _skip_absent_optional(
    pending: list[DocumentRef],
    targets: Mapping[DocumentRef, TargetState],
    result: ApplyResult,
) -> list[DocumentRef]:
    """Settle the refs ``_read_round`` left out (their optional alias is absent) as skipped."""
    kept = []
    for ref in pending:
        if ref in targets:
            kept.append(ref)
        else:
            result._settle(ref, Settled.SKIPPED, "no reindex running")
    return kept


_Writes = dict[DocumentRef, tuple[DocumentWrite, list[DocumentRef]]]


def _plan_round(
    pending: Sequence[DocumentRef],
    targets: Mapping[DocumentRef, TargetState],
    plan: Planner,
    reread: Rereader | None,
    result: ApplyResult,
    through_alias: bool = False,
) -> _Writes:
    """Plan each pending ref against its target; re-read the items whose order is unknown.

    A write goes to the concrete index its state was read from, or, ``through_alias``, to the
    ref's alias (a rebuild's reindex alias, which never moves: it is only ever dropped)."""
    writes: _Writes = {}
    to_reread: list[DocumentRef] = []

    def decide(ref: DocumentRef, target: TargetState, read: ReadState | None) -> None:
        concrete = ref if through_alias else (target.index, ref[1])
        if concrete in writes:  # two aliases on one index: one write serves both
            writes[concrete][1].append(ref)
            return
        try:
            decision = plan(ref, target, read)
        except PoisonRecordError as error:
            result._settle(ref, Settled.REJECTED, str(error))
            return
        if decision is Verdict.SKIP:
            result._settle(ref, Settled.SKIPPED)
        elif decision is Verdict.REREAD:
            if read is not None or reread is None:
                raise AssertionError(f"planner asked to re-read {ref} with nothing to re-read")
            to_reread.append(ref)
        else:  # written to the concrete index the state was read from
            writes[concrete] = (dataclasses.replace(decision, ref=concrete), [ref])

    for ref in pending:
        target = targets.get(ref)
        if target is None:  # an optional alias that does not exist
            result._settle(ref, Settled.SKIPPED, "no reindex running")
            continue
        if target.document is not None:
            result.observed.setdefault(ref, target.document)
        decide(ref, target, None)
    if to_reread and reread is not None:
        result.rereads += len(to_reread)
        fresh = reread(to_reread)
        for ref in to_reread:
            state = fresh.get(ref, "the item could not be read again")
            if isinstance(state, str):
                result._settle(ref, Settled.FAILED, state)
            else:
                decide(ref, targets[ref], state)
    return writes


@dataclass(slots=True)
class _RoundReasons:
    transient: list[str] = field(default_factory=list)
    conflicts: list[tuple[DocumentRef, str]] = field(default_factory=list)


def _send_writes(
    client: OpenSearch,
    guard: Downstream,
    writes: _Writes,
    limits: OpenSearchConfig,
    result: ApplyResult,
    options: WriteOptions,
) -> _RoundReasons:
    """Send the round's writes in ``_bulk`` chunks and settle every ref by its item's result."""
    reasons = _RoundReasons()
    planned = [write for write, _ in writes.values()]
    unencodable: list[tuple[DocumentWrite, str]] = []
    chunks = bulk_chunks(planned, limits.bulk_max_actions, limits.bulk_max_bytes, unencodable)
    for chunk, body in chunks:
        started = time.perf_counter()
        try:
            item_results = guard.call(
                send_bulk,
                client,
                body,
                chunk,
                options.refresh,
                _cap(limits, options.deadline),
                require_alias=options.require_alias,
            )
        finally:
            result.bulk_seconds += time.perf_counter() - started
        for write in chunk:
            outcome = item_results[write.ref]
            for ref in writes[write.ref][1]:
                if outcome.status is ItemStatus.OK:
                    result._settle(ref, _SETTLED_BY_KIND[write.kind])
                elif outcome.status is ItemStatus.PERMANENT:
                    reason = f"OpenSearch rejected the document: {outcome.reason}"
                    result._settle(ref, Settled.REJECTED, reason)
                elif outcome.status is ItemStatus.CONFLICT:
                    reasons.conflicts.append((ref, outcome.reason))
                else:
                    reasons.transient.append(outcome.reason)
    for write, reason in unencodable:
        for ref in writes[write.ref][1]:
            result._settle(ref, Settled.REJECTED, reason)
    return reasons
