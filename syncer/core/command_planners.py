"""The commands' planners, pure: for one ref, its target's state and (after ``Verdict.REREAD``)
the item read again in, the conditional write (or why there is none) out; never any I/O.

Each holds what its command read before the write round (the scanned page, the old index's
``_syncer`` objects, the reads of drifted keys) and is a ``Planner`` (``core.writes``):

- ``ScanPlanner``: a scanned page (or an export's page) into the new index (reindex, load);
- ``RepairPlanner`` / ``StrayPlanner``: ``syncer verify --repair``'s drifted keys and strays;
- ``PurgePlanner``: a conditional delete of a tombstone still old enough (purge-tombstones);
- ``CarriedTombstonePlanner``: the old index's young tombstones (the prepare phase);
- ``NewerInOldPlanner``: what the old index holds newer, re-read (settle, catch-up);
- ``CarryPlanner``: the old index's live documents ordered against an export (export settle);
- ``RereadPlanner`` / ``KeepOldPlanner``: export lines that could not be loaded;
- ``BackfillPlanner``: an export line applied to the live index (``plan_backfill``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncer.config import Route, TableConfig
from syncer.core.bodies import document_body, tombstone_body
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
from syncer.core.exports import ExportLine
from syncer.core.planners import order_verdict, plan_read_state, plan_scanned, plan_tombstone
from syncer.core.routes import Routed, document_in, route_item
from syncer.core.versions import Order, Version, compare, version_from_meta

Shape = Callable[[ReadState], ReadState]
# What a retried work item's re-reader answers for a ref whose index already holds the very
# state planned (``commands.exports.ownwrites``): the planner skips it.
ALREADY_HELD = ReadState(None, Version())


def unshaped(read: ReadState) -> ReadState:
    return read


def routed_read(table: TableConfig, route: Route) -> Shape:
    """A read of the table as ``route``'s index holds it: routed, transformed, else absent."""

    def shape(read: ReadState) -> ReadState:
        return ReadState(document_in(route_item(table, read.item), route), read.version)

    return shape


def route_named(table: TableConfig, index: str) -> Route:
    """The route of ``table`` that writes ``index``."""
    return next(route for route in table.resolved_routes if route.index == index)


@dataclass(frozen=True, slots=True)
class ScanPlanner:
    """Scanned (or exported) states into a new index, each over an older state only.

    ``scanned`` is each ref's state as its route's index holds it, ``views`` its route's
    one-index table, ``shapes`` (by the ref's index) what a re-read becomes there. A re-read
    answered ``ALREADY_HELD`` (the index holds this very state) is skipped.
    """

    scanned: Mapping[DocumentRef, ReadState]
    views: Mapping[DocumentRef, TableConfig]
    shapes: Mapping[str, Shape]

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is ALREADY_HELD:
            return Verdict.SKIP
        again = None if reread is None else self.shapes[ref[0]](reread)
        return plan_scanned(ref, self.views[ref], self.scanned[ref], target, again)


@dataclass(slots=True)
class RepairPlanner:
    """``verify --repair``: each route's index written as a consistent read found the item.

    ``reads`` are the reads of the drifted keys, by document id; the first round plans with
    them (ordered like a scan), a re-read replaces them. A state is routed once per read.
    """

    table: TableConfig
    reads: Mapping[str, ReadState]
    _routed: dict[tuple[str, Version], Routed] = field(default_factory=dict)

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        alias, doc_id = ref
        first = self.reads[doc_id]
        state = reread if reread is not None else first
        memo = (doc_id, state.version)
        routed = self._routed.get(memo)
        if routed is None:
            routed = self._routed[memo] = route_item(self.table, state.item)
        route = route_named(self.table, alias)
        document = document_in(routed, route)
        scanned = ReadState(document, first.version)
        again = None if reread is None else ReadState(document, reread.version)
        return plan_scanned(ref, self.table.route_table(route), scanned, target, again)


@dataclass(frozen=True, slots=True)
class StrayPlanner:
    """``verify --repair``'s stray documents (no item key makes their id): a tombstone with the
    version of the scan that found no item, unless written since (a re-read cannot key them)."""

    table: TableConfig
    absent: Version

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        view = self.table.route_table(route_named(self.table, ref[0]))
        return plan_scanned(ref, view, ReadState(None, self.absent), target, reread)


def plan_purge(target: TargetState, ref: DocumentRef, cutoff_ms: int) -> Decision:
    """A tombstone's conditional delete, when it is still one and older than ``cutoff_ms``."""
    document = target.document
    if document is None:  # already gone, which is the aim
        return Verdict.SKIP
    changed_at = document.version.changed_at_ms
    if not document.deleted or changed_at is None or changed_at >= cutoff_ms:
        return Verdict.SKIP  # a newer change replaced it: it stays
    return DocumentWrite(ref, WriteKind.DELETE, {}, document)


@dataclass(slots=True)
class PurgePlanner:
    """``purge-tombstones``: ``plan_purge`` per ref; the refs a newer change replaced (found
    by the search, no longer old tombstones when read) are kept in ``replaced``."""

    cutoff_ms: int
    replaced: set[DocumentRef] = field(default_factory=set)

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        decision = plan_purge(target, ref, self.cutoff_ms)
        if decision is Verdict.SKIP and target.document is not None:
            self.replaced.add(ref)
        return decision


@dataclass(frozen=True, slots=True)
class CarriedTombstonePlanner:
    """The old index's tombstones (their ``_syncer``, by ref) carried into the new index, each
    ordered like any state (``plan_tombstone``); a re-read is written as found (``shape``)."""

    table: TableConfig
    metas: Mapping[DocumentRef, Mapping[str, Any]]
    shape: Shape = unshaped

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is not None:
            return plan_read_state(ref, self.table, self.shape(reread), target.document)
        meta = self.metas[ref]
        ttl = bool(meta.get("ttl", False))
        return plan_tombstone(ref, self.table, version_from_meta(meta), target, ttl=ttl)


@dataclass(frozen=True, slots=True)
class NewerInOldPlanner:
    """Leave what the new index holds when it is as new as the old index's state
    (``old_versions``); else read the item again and write it as found (a tombstone when it is
    gone, even over nothing: an absent read is kept as a tombstone)."""

    table: TableConfig
    old_versions: Mapping[DocumentRef, Version]
    shape: Shape = unshaped

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is None:
            verdict = order_verdict(self.old_versions[ref], target.document)
            return Verdict.SKIP if verdict is Verdict.SKIP else Verdict.REREAD
        read = self.shape(reread)
        if read.item is None and target.document is None:
            body = tombstone_body(self.table, read.version)
            return DocumentWrite(ref, WriteKind.TOMBSTONE, body, None)
        return plan_read_state(ref, self.table, read, target.document)


@dataclass(frozen=True, slots=True)
class CarryPlanner:
    """An export's settle phase: each of the old index's live documents (``olds``, by ref into
    the new index) against what the new index holds and the export's read (``export_version``).

    Held in the new index: the old document only where newer. Absent there: the export did not
    hold the item, so it was deleted before the export read it (a tombstone of the export's
    version), unless the old index learned it later (the old document), or the two cannot be
    ordered (read again; an absent read is kept as a tombstone).
    """

    route_table: TableConfig
    olds: Mapping[DocumentRef, Mapping[str, Any]]
    export_version: Version
    shape: Shape = unshaped

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is not None:
            again = self.shape(reread)
            if again.item is None and target.document is None:
                body = tombstone_body(self.route_table, again.version)
                return DocumentWrite(ref, WriteKind.TOMBSTONE, body, None)
            return plan_read_state(ref, self.route_table, again, target.document)
        source = self.olds[ref]
        old_version = version_from_meta(source.get(SYNCER_FIELD) or {})
        if target.document is not None:
            verdict = order_verdict(old_version, target.document)
            if verdict is not None:
                return verdict
            return DocumentWrite(ref, WriteKind.INDEX, source, target.document)
        order = compare(old_version, self.export_version)
        if order is Order.UNKNOWN:
            return Verdict.REREAD
        if order is Order.NEWER:
            return DocumentWrite(ref, WriteKind.INDEX, source, None)
        body = tombstone_body(self.route_table, self.export_version)
        return DocumentWrite(ref, WriteKind.TOMBSTONE, body, None)


@dataclass(frozen=True, slots=True)
class RereadPlanner:
    """Items whose export line could not be loaded: nothing from the export, so read again
    from the table and written as found, in each new index (``views``/``shapes`` by index)."""

    views: Mapping[str, TableConfig]
    shapes: Mapping[str, Shape]

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is None:
            return Verdict.REREAD  # only the table can say
        read = self.shapes[ref[0]](reread)
        return plan_read_state(ref, self.views[ref[0]], read, target.document)


@dataclass(frozen=True, slots=True)
class KeepOldPlanner:
    """The old index's document of each ref (``olds``) kept in the new index, unless that holds
    something as new or newer (a stream change reached it since: the item is not absent)."""

    olds: Mapping[DocumentRef, Mapping[str, Any]]

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        source = self.olds[ref]
        meta = source.get(SYNCER_FIELD) or {}
        indexed = target.document
        if indexed is not None and compare(version_from_meta(meta), indexed.version) is not (
            Order.NEWER
        ):
            return Verdict.SKIP
        kind = WriteKind.TOMBSTONE if meta.get("deleted") else WriteKind.INDEX
        return DocumentWrite(ref, kind, source, target.document)


@dataclass(frozen=True, slots=True)
class BackfillState:
    """One exported item's state in one route's index, and what its cache keys come from."""

    route: Route
    document: Mapping[str, Any] | None  # None: a tombstone there
    deleted: bool  # the line is a delete (not an item routed elsewhere)
    line: ExportLine
    images: tuple[Mapping[str, Any], ...]  # decoded images, for cache keys


def plan_backfill(
    ref: DocumentRef,
    route_table: TableConfig,
    state: BackfillState,
    target: TargetState,
    reread: ReadState | None,
) -> Decision:
    """The write of one exported state: only over an older one; tombstones for deletes.

    ``reread`` is already shaped for the route's index; ``ALREADY_HELD`` skips."""
    if reread is ALREADY_HELD:
        return Verdict.SKIP  # a retried file's own write (``OwnWrites``): nothing to read again
    if reread is not None:
        return plan_read_state(ref, route_table, reread, target.document)
    verdict = order_verdict(state.line.version, target.document)
    if verdict is not None:
        return verdict
    if state.document is not None:
        body = document_body(state.document, route_table, state.line.version)
        return DocumentWrite(ref, WriteKind.INDEX, body, target.document)
    if target.document is None and not state.deleted:
        return Verdict.SKIP  # routed elsewhere, never here: nothing to hide
    body = tombstone_body(route_table, state.line.version)
    return DocumentWrite(ref, WriteKind.TOMBSTONE, body, target.document)


@dataclass(slots=True)
class BackfillPlanner:
    """``syncer backfill``'s planner for one page: ``plan_backfill`` per ref, a re-read routed
    for the ref's route; the refs whose index held this state or a newer one in ``held``."""

    table: TableConfig
    states: Mapping[DocumentRef, BackfillState]
    held: set[DocumentRef] = field(default_factory=set)

    def __call__(self, ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        state = self.states[ref]
        view = self.table.route_table(state.route)
        again = reread
        if reread is not None and reread is not ALREADY_HELD:
            again = routed_read(self.table, state.route)(reread)
        decision = plan_backfill(ref, view, state, target, again)
        if decision is Verdict.SKIP and target.document is not None:
            self.held.add(ref)  # not a state routed elsewhere meeting nothing
        return decision


def same_read(indexed: IndexedDocument | None, version: Version) -> bool:
    """Whether ``indexed`` carries exactly ``version``'s read interval (a retried work item's
    own write, which the order cannot tell from another read of the same interval)."""
    if indexed is None or not indexed.version.is_read or not version.is_read:
        return False
    mine, theirs = version, indexed.version
    return (theirs.read_from_ms, theirs.read_to_ms) == (mine.read_from_ms, mine.read_to_ms)
