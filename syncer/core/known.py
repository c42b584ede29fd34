"""``KnownStates``: the last state this process read or wrote per document, so that a stream
batch can plan its writes without reading first (docs/ordering.md, "Mechanism").

A known state is a guess that OpenSearch checks: a write planned against it is conditional on
its ``_seq_no`` and ``_primary_term`` in its concrete index, which no other state of that
document in that index carries, so a document changed since (by another worker, a repair, a
backfill) answers 409 and is read and planned again like any conflict. What OpenSearch cannot
check is a decision to write nothing, so ``core.rounds`` reads before it settles any ref
whose known state said SKIP or REREAD; and a known state is used only while its alias still
resolves to the index it names. Bounded: the oldest entry goes first. No I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from syncer.core.documents import DocumentRef, IndexedDocument, indexed_document

# Entries kept by default ([opensearch] known_states): about 1 KB each.
DEFAULT_CAPACITY = 10_000

# (index, state), or as a write left it: (index, _seq_no, _primary_term, the fields read back,
# their values or _ABSENT), its version parsed on first use only
_Entry: TypeAlias = (
    tuple[str, IndexedDocument] | tuple[str, int, int, tuple[str, ...], tuple[Any, ...]]
)
_ABSENT = object()


class KnownStates:
    """(alias, document id) -> (the concrete index, the state it held there), oldest out first."""

    __slots__ = ("_lock", "_states", "capacity")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._states: dict[DocumentRef, _Entry] = {}
        # Batches of one process may run on several threads (a library caller's): each call
        # holds the lock, so eviction never iterates a dict another thread is changing.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def lookup(self, refs: Iterable[DocumentRef]) -> dict[DocumentRef, tuple[str, IndexedDocument]]:
        """The known (index, state) of each of ``refs`` that has one."""
        states = self._states
        found = {}
        with self._lock:
            for ref in refs:
                entry = states.get(ref)
                if entry is None:
                    continue
                if len(entry) == 5:  # kept as written: its version is parsed on first use only
                    index, seq_no, primary_term, kept, values = entry
                    source = {n: v for n, v in zip(kept, values, strict=True) if v is not _ABSENT}
                    entry = (index, indexed_document(source, seq_no, primary_term))
                    states[ref] = entry
                found[ref] = entry
        return found

    def remember(self, ref: DocumentRef, index: str, document: IndexedDocument) -> None:
        """``ref``'s alias resolved to ``index``, whose document is now ``document``."""
        self._keep(ref, (index, document))

    def remember_written(
        self,
        ref: DocumentRef,
        index: str,
        body: Mapping[str, Any],
        seq_no: int,
        primary_term: int,
        kept: tuple[str, ...],
    ) -> None:
        """``ref``'s document in ``index`` is now ``body``, at ``seq_no`` and ``primary_term``.

        Only the values of the ``kept`` fields stay (what an ``_mget`` reads back), in a tuple:
        a batch keeps thousands of these while it still holds its own values.
        """
        if self.capacity > 0:
            values = tuple(body.get(name, _ABSENT) for name in kept)
            self._keep(ref, (index, seq_no, primary_term, kept, values))

    def _keep(self, ref: DocumentRef, entry: _Entry) -> None:
        if self.capacity <= 0:
            return
        states = self._states
        with self._lock:
            states.pop(ref, None)  # moved to the newest end
            states[ref] = entry
            if len(states) > self.capacity:
                del states[next(iter(states))]

    def forget(self, ref: DocumentRef) -> None:
        """Nothing is known of ``ref`` any more (its write failed or met another writer's)."""
        with self._lock:
            self._states.pop(ref, None)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
