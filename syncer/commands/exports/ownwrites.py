"""A retried work item recognises the documents it wrote itself, without reading the table.

A data file loaded again (a retried step, a rerun) meets documents that carry exactly the read
interval it is about to write. Rule 4 answers UNKNOWN for two equal intervals, so the planner
asks for a re-read, which would read every item of the file from DynamoDB: the cost exports
exist to avoid. ``OwnWrites`` stands in front of the table's re-reader: for a ref whose indexed
document had the very interval of the planned state, it first reads that document whole from
the index (one ``_mget``) and, when its content equals the planned state
(``core.exports.holds_this_state``), answers ``ALREADY_HELD``, which the planner turns into a
skip; every other ref is read from the table as before (docs/ordering.md, "Exports").

The normal path is unchanged: the rounds of ``apply_writes`` read only ``_syncer`` (and the
fields cache keys need), and the whole document is read only for those equal intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from syncer.core.command_planners import ALREADY_HELD, same_read
from syncer.core.documents import (
    DocumentRef,
    IndexedDocument,
    ReadState,
    TargetState,
    indexed_document,
)
from syncer.core.versions import Version
from syncer.sinks.ports import Sinks
from syncer.sinks.search import Rereader

HoldsState = Callable[[IndexedDocument], bool]
__all__ = ["ALREADY_HELD", "HoldsState", "OwnWrites"]  # ALREADY_HELD: core.command_planners


class OwnWrites:
    """One ``apply`` call's re-reader that recognises the states the index already holds."""

    def __init__(self, sinks: Sinks, table_reread: Rereader) -> None:
        self._admin = sinks.admin
        self._table_reread = table_reread
        self._checks: dict[DocumentRef, tuple[str, HoldsState]] = {}

    def note(
        self, ref: DocumentRef, target: TargetState, version: Version, holds: HoldsState
    ) -> None:
        """Before the planner answers: when ``target`` holds a document of exactly ``version``'s
        read interval, ``reread`` checks it whole with ``holds`` instead of reading the table."""
        if same_read(target.document, version):
            self._checks[ref] = (target.index, holds)

    def reread(self, refs: Sequence[DocumentRef]) -> Mapping[DocumentRef, ReadState | str]:
        checks = {ref: self._checks.pop(ref) for ref in refs if ref in self._checks}
        held = self._held(checks)
        rest = [ref for ref in refs if ref not in held]
        found: dict[DocumentRef, ReadState | str] = dict(self._table_reread(rest)) if rest else {}
        found.update(dict.fromkeys(held, ALREADY_HELD))
        return found

    def _held(self, checks: Mapping[DocumentRef, tuple[str, HoldsState]]) -> set[DocumentRef]:
        """The refs whose document, read whole now, is the planned state."""
        by_index: dict[str, list[DocumentRef]] = {}
        for ref, (index, _) in checks.items():
            by_index.setdefault(index, []).append(ref)
        held = set()
        for index, refs in by_index.items():
            docs = self._admin.documents(index, [ref[1] for ref in refs])
            for ref in refs:
                doc = docs.get(ref[1])
                if doc is None:
                    continue
                whole = indexed_document(
                    doc.get("_source") or {}, int(doc["_seq_no"]), int(doc["_primary_term"])
                )
                if checks[ref][1](whole):
                    held.add(ref)
        return held
