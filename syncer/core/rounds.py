"""``write_documents``: the write rounds (read, plan, write conditionally, settle every item),
over any search store that only sends requests (``WriteRounds``; docs/ordering.md).

Each document carries its version in ``_syncer`` (``syncer.core.versions``). A write is sent only
when the planner finds it newer than the indexed state, and it is conditional on the document not
having changed since it was read (``if_seq_no`` and ``if_primary_term``, or ``create`` when
absent). Deletes write tombstones, never real deletes, so an older change can never bring a
deleted item back; the alias filters tombstones out. Every ``_bulk`` item's result is read.

The loop lives here, outside the adapters: the store reads and sends, the planner decides, and
this module alone decides what goes round again (a conflict, a transient item, a re-read). It
does no I/O of its own and imports nothing from ``syncer.sinks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from syncer.core.documents import (
    DocumentRef,
    DocumentWrite,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.known import KnownStates
from syncer.core.writes import (
    NO_REINDEX,
    SETTLED_BY_KIND,
    ApplyResult,
    ItemResult,
    ItemStatus,
    Planner,
    WriteOptions,
    WriteRounds,
)
from syncer.errors import PendingItemsError, PoisonRecordError


def write_documents(
    store: WriteRounds,
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
    Rounds are bounded by the store's retry policy and ``deadline``; what is left then is
    ``FAILED`` with the reason the store gives (``WriteRounds.failure``, which re-raises
    errors no table knows: bugs). ``store`` only reads and sends (``WriteRounds``): the
    OpenSearch adapter, or the tests' in-memory fake.
    """
    deadline = options.deadline
    result = ApplyResult()
    pending = list(dict.fromkeys(refs))
    if not pending:
        return result
    first_round = True
    guessed: set[DocumentRef] = set()  # refs whose observed state came from ``options.known``
    try:
        for attempt in store.attempts(deadline):
            with attempt:
                pending = [ref for ref in pending if ref not in result.outcomes]
                absent = options.absent_first if first_round else frozenset()
                # Refs planned unread, and every ref of a rebuild (``require_alias``), are
                # written through their alias, which must exist.
                through = frozenset(
                    ref[0] for ref in pending if options.require_alias or ref in absent
                )
                known, exists = (
                    _known_targets(store, pending, options) if first_round else ({}, None)
                )
                targets = store.read_round(
                    [ref for ref in pending if ref not in known] if known else pending,
                    options.fields,
                    options.optional_aliases,
                    deadline,
                    read=options.read_first or not first_round,
                    absent=absent,
                    exists=exists,
                )
                targets.update(known)
                result.known += len(known)
                first_round = False
                pending = _skip_absent_optional(pending, targets, result)
                writes = _plan_round(store, pending, targets, plan, options, result, guessed)
                reasons = _send_writes(store, writes, result, options, through)
                if not options.replan_conflicts:
                    for ref, reason in reasons.conflicts:
                        result.settle(ref, Settled.CONFLICT, reason)
                left = sum(1 for ref in pending if ref not in result.outcomes)
                if left:
                    why = reasons.transient[0] if reasons.transient else "version conflicts"
                    raise PendingItemsError(left, why)
    except Exception as error:  # noqa: BLE001 - the store's failure() re-raises bugs
        reason = store.failure(error)
        for ref in pending:
            if ref not in result.outcomes:
                result.settle(ref, Settled.FAILED, reason)
                if options.known is not None:
                    options.known.forget(ref)
    return result


def _known_targets(
    store: WriteRounds, pending: Sequence[DocumentRef], options: WriteOptions
) -> tuple[dict[DocumentRef, TargetState], dict[str, bool] | None]:
    """The refs whose state ``options.known`` holds in the index their alias resolves to now,
    and whether each optional (reindex) alias of ``pending`` exists.

    The aliases are resolved by one request sent after the batch began, as the ``_mget`` and
    the reindex aliases' ``HEAD`` resolve them (docs/ordering.md, "The swap"): a state known
    in an index the alias has left is read again. Optional aliases' refs are always read; the
    same request says whether those aliases exist, so no ``HEAD`` follows it.
    """
    known = options.known
    if known is None:
        return {}, None
    optional = options.optional_aliases
    candidates = known.lookup(ref for ref in pending if ref[0] not in optional)
    if not candidates:
        return {}, None
    reindexing = {ref[0] for ref in pending if ref[0] in optional}
    current = store.current_indices({ref[0] for ref in candidates} | reindexing, options.deadline)
    targets = {
        ref: state for ref, state in candidates.items() if current.get(ref[0]) == state.index
    }
    return targets, {alias: alias in current for alias in reindexing}


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
            result.settle(ref, Settled.SKIPPED, NO_REINDEX)
    return kept


_Writes = dict[DocumentRef, tuple[DocumentWrite, list[DocumentRef]]]


def _plan_round(
    store: WriteRounds,
    pending: Sequence[DocumentRef],
    targets: dict[DocumentRef, TargetState],
    plan: Planner,
    options: WriteOptions,
    result: ApplyResult,
    guessed: set[DocumentRef],
) -> _Writes:
    """Plan each pending ref against its target; re-read the items whose order is unknown.

    A write goes to the concrete index its state was read from, or, ``require_alias``, to the
    ref's alias (a rebuild's reindex alias, which never moves: it is only ever dropped). A ref
    planned against a known state (``TargetState.known``) that asks for no write is read first
    and planned again: OpenSearch checks a write's state (``if_seq_no``), never a skip's."""
    writes: _Writes = {}
    to_reread: list[DocumentRef] = []
    unsure: list[DocumentRef] = []
    reread = options.reread
    through_alias = options.require_alias

    def decide(ref: DocumentRef, target: TargetState, read: ReadState | None) -> None:
        concrete = ref if through_alias else (target.index, ref[1])
        if concrete in writes:  # two aliases on one index: one write serves both
            writes[concrete][1].append(ref)
            return
        try:
            decision = plan(ref, target, read)
        except PoisonRecordError as error:
            result.settle(ref, Settled.REJECTED, str(error))
            return
        if isinstance(decision, Verdict) and target.known:
            unsure.append(ref)
        elif decision is Verdict.SKIP:
            result.settle(ref, Settled.SKIPPED)
        elif decision is Verdict.REREAD:
            if read is not None or reread is None:
                raise AssertionError(f"planner asked to re-read {ref} with nothing to re-read")
            to_reread.append(ref)
        else:  # written to the concrete index the state was read from
            if decision.ref != concrete:  # built directly: dataclasses.replace costs 3x more
                decision = DocumentWrite(
                    concrete, decision.kind, decision.body, decision.expected, decision.version
                )
            writes[concrete] = (decision, [ref])

    for ref in pending:
        target = targets.get(ref)
        if target is None:  # an optional alias that does not exist
            result.settle(ref, Settled.SKIPPED, NO_REINDEX)
            continue
        _observe(ref, target, result, guessed, options)
        decide(ref, target, None)
    if unsure:  # known states that asked for no write: what is indexed decides
        read = store.read_round(
            unsure, options.fields, options.optional_aliases, options.deadline, read=True
        )
        for ref in unsure:
            target = targets[ref] = read[ref]
            _observe(ref, target, result, guessed, options)
            decide(ref, target, None)
    if to_reread and reread is not None:
        result.rereads += len(to_reread)
        fresh = reread(to_reread)
        for ref in to_reread:
            state = fresh.get(ref, "the item could not be read again")
            if isinstance(state, str):
                result.settle(ref, Settled.FAILED, state)
            else:
                decide(ref, targets[ref], state)
    return writes


def _observe(
    ref: DocumentRef,
    target: TargetState,
    result: ApplyResult,
    guessed: set[DocumentRef],
    options: WriteOptions,
) -> None:
    """Keep the first indexed state seen per ref (its cache keys are invalidated), a read one
    over a known one; keep each state read in ``options.known``."""
    document = target.document
    if target.known:
        if document is not None and ref not in result.observed:
            result.observed[ref] = document
            guessed.add(ref)
        return
    if ref in guessed:  # the known state was not what the index held: what was read is
        guessed.discard(ref)
        result.observed.pop(ref, None)
        result.known_stale += 1
    if document is not None:
        result.observed.setdefault(ref, document)
        known = options.known
        if known is not None and ref[0] not in options.optional_aliases:
            known.remember(ref, target.index, document)


@dataclass(slots=True)
class _RoundReasons:
    transient: list[str] = field(default_factory=list)
    conflicts: list[tuple[DocumentRef, str]] = field(default_factory=list)


def _send_writes(
    store: WriteRounds,
    writes: _Writes,
    result: ApplyResult,
    options: WriteOptions,
    through: frozenset[str],
) -> _RoundReasons:
    """Send the round's writes and settle every ref by its item's result."""
    reasons = _RoundReasons()
    planned = [write for write, _ in writes.values()]
    known = options.known
    kept = options.fields
    for sent in store.send_round(planned, options.refresh, options.deadline, through):
        result.bulk_seconds += sent.seconds
        for write in sent.writes:
            outcome = sent.results[write.ref]
            refs = writes[write.ref][1]
            if known is not None:
                _keep_written(known, write, outcome, refs, kept, options.optional_aliases)
            for ref in refs:
                if outcome.status is ItemStatus.OK:
                    result.settle(ref, SETTLED_BY_KIND[write.kind])
                elif outcome.status is ItemStatus.PERMANENT:
                    reason = f"OpenSearch rejected the document: {outcome.reason}"
                    result.settle(ref, Settled.REJECTED, reason)
                elif outcome.status is ItemStatus.CONFLICT:
                    reasons.conflicts.append((ref, outcome.reason))
                else:
                    reasons.transient.append(outcome.reason)
        for write, reason in sent.unencodable:
            for ref in writes[write.ref][1]:
                result.settle(ref, Settled.REJECTED, reason)
    return reasons


def _keep_written(
    known: KnownStates,
    write: DocumentWrite,
    outcome: ItemResult,
    refs: Sequence[DocumentRef],
    kept: tuple[str, ...],
    optional: frozenset[str],
) -> None:
    """What a write left in the index, known for the refs it served; anything else forgotten."""
    written = outcome.written
    if outcome.status is not ItemStatus.OK or written is None or write.kind is WriteKind.DELETE:
        for ref in refs:
            known.forget(ref)
        return
    kept_refs = [ref for ref in refs if ref[0] not in optional]
    if kept_refs:
        known.remember_written(kept_refs, write, written, kept)
