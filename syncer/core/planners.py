"""The planners: pure functions from an indexed state to the conditional write that replaces it.

Every writer plans through these (docs/ordering.md): a planner is asked, for one ref, its
target's state and (after ``Verdict.REREAD``) the item read again, and answers a
``DocumentWrite``, ``Verdict.SKIP`` or ``Verdict.REREAD``; it never does I/O.

- ``ChangePlanner``: the stream's, for one batch of ``KeyWork`` (``plan_write`` per ref);
- ``plan_scanned`` / ``plan_read_state``: a state read from the table (reindex, verify,
  exports, re-reads);
- ``plan_tombstone``: a tombstone carried from another index (its own version).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from syncer.config import Route, TableConfig
from syncer.config.names import reindex_alias
from syncer.core.bodies import document_body, tombstone_body
from syncer.core.coalesce import KeyChange
from syncer.core.documents import (
    Decision,
    DocumentRef,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.routes import Routed, document_in, route_item
from syncer.core.versions import Order, Version, compare
from syncer.core.work import KeyWork

Image = Mapping[str, Any]


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
        body = tombstone_body(table, read.version)
        return DocumentWrite(ref, WriteKind.TOMBSTONE, body, indexed, read.version)
    body = document_body(read.item, table, read.version)
    return DocumentWrite(ref, WriteKind.INDEX, body, indexed, read.version)


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
    ordered against the indexed state's, which happens only next to a read of the table, or
    next to a change of the same time from Kinesis), and it is asked for at once when the
    batch's own changes of the key could not be ordered (``KeyChange.uncertain``).
    """
    if reread is not None:
        ref = (target.index, change.document_id)
        indexed = target.document
        if document is None and (indexed is None or indexed.deleted):
            # The item is gone (or in another route) and nothing, or a tombstone, is there. A
            # tombstone with the read's version keeps every change older than the read from
            # bringing the item back when it is delivered later: leaving an older tombstone
            # would let a change between the two win (a Kinesis change of the batch's
            # millisecond, delivered again after the batch). Nothing to do only when the
            # tombstone there is as new as the read.
            if indexed is not None and order_verdict(reread.version, indexed) is Verdict.SKIP:
                return Verdict.SKIP
            body = tombstone_body(route_table, reread.version)
            return DocumentWrite(ref, WriteKind.TOMBSTONE, body, indexed, reread.version)
        read = ReadState(document, reread.version)
        return plan_read_state(ref, route_table, read, target.document)
    if change.uncertain:
        return Verdict.REREAD  # the batch's own changes of the key cannot be ordered
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
        return DocumentWrite(ref, WriteKind.TOMBSTONE, body, target.document, version)
    body = document_body(document, route_table, version)
    return DocumentWrite(ref, WriteKind.INDEX, body, target.document, version)


def plan_tombstone(
    ref: DocumentRef,
    table: TableConfig,
    version: Version,
    target: TargetState,
    *,
    ttl: bool = False,
) -> Decision:
    """A tombstone of ``version`` in place of ``target``'s state, when it is newer.

    How a tombstone found in one index (the old index of a reindex) is carried into another:
    ordered like any state, so an older document never replaces it and it never replaces a
    newer one.
    """
    verdict = order_verdict(version, target.document)
    if verdict is not None:
        return verdict
    body = tombstone_body(table, version, ttl)
    return DocumentWrite(ref, WriteKind.TOMBSTONE, body, target.document, version)


class ChangePlanner:
    """The stream's planner for one batch: each ref's write from its key's routed state.

    A ref is a route's alias (or its reindex alias) and a document id; the key's state is
    routed once (``KeyWork.route``) for all its refs, and an item read again after
    ``Verdict.REREAD`` is routed once per read for all of its refs too.
    """

    __slots__ = ("_by_ref", "_rereads", "_routes")

    def __init__(self, works: Iterable[KeyWork]) -> None:
        self._by_ref = {ref: work for work in works for ref in work.refs}
        self._routes: dict[tuple[str, str], tuple[Route, TableConfig]] = {}
        self._rereads: dict[tuple[str, str, Version], Routed] = {}

    @property
    def refs(self) -> list[DocumentRef]:
        return list(self._by_ref)

    def work(self, ref: DocumentRef) -> KeyWork:
        return self._by_ref[ref]

    def find(self, ref: object) -> KeyWork | None:
        """The key's work of ``ref``, or None when the batch has no such ref."""
        if not isinstance(ref, tuple):
            return None
        return self._by_ref.get(ref)

    def __call__(self, ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
        work = self._by_ref[ref]
        state = work.route() if read is None else self._reread_state(work, read)
        route, route_table = self._route_of(work.table, ref[0])
        document = document_in(state, route)  # PoisonRecordError: the ref is rejected
        return plan_write(work.change, route_table, document, target, read)

    def _reread_state(self, work: KeyWork, read: ReadState) -> Routed:
        memo = (work.change.table, work.change.document_id, read.version)
        state = self._rereads.get(memo)
        if state is None:
            state = self._rereads[memo] = route_item(work.table, read.item)
        return state

    def _route_of(self, table: TableConfig, alias: str) -> tuple[Route, TableConfig]:
        """The route whose alias (or reindex alias) ``alias`` is, and its one-index table."""
        found = self._routes.get((table.name, alias))
        if found is None:
            for route in table.resolved_routes:
                pair = (route, table.route_table(route))
                self._routes[(table.name, route.index)] = pair
                self._routes[(table.name, reindex_alias(route.index))] = pair
            found = self._routes[(table.name, alias)]
        return found
