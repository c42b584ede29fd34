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

import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentRef,
    DocumentWrite,
    IndexedDocument,
    TargetState,
)
from syncer.core.versions import version_from_meta

# Entries kept by default ([opensearch] known_states): about 1 KB each.
DEFAULT_CAPACITY = 10_000


class KnownStates:
    """(alias, document id) -> the ``TargetState`` it had (``known``), oldest out first.

    The states are kept ready to plan against, so a lookup builds nothing. An ``OrderedDict``
    because a full store drops its oldest entry on every write: a plain dict finds its first
    entry by stepping over every slot deleted before it (about 1.5 us a write,
    bench/known_states.py).
    """

    __slots__ = ("_lock", "_states", "capacity")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._states: OrderedDict[DocumentRef, TargetState] = OrderedDict()
        # Batches of one process may run on several threads (a library caller's): each call
        # holds the lock, so eviction never meets a dict another thread is changing.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def lookup(self, refs: Iterable[DocumentRef]) -> dict[DocumentRef, TargetState]:
        """The known state of each of ``refs`` that has one."""
        get = self._states.get
        with self._lock:
            return {ref: state for ref in refs if (state := get(ref)) is not None}

    def remember(self, ref: DocumentRef, index: str, document: IndexedDocument) -> None:
        """``ref``'s alias resolved to ``index``, whose document is now ``document``."""
        self.keep([ref], TargetState(index, document, known=True))

    def remember_written(
        self,
        refs: Iterable[DocumentRef],
        write: DocumentWrite,
        written: Mapping[str, Any],
        kept: tuple[str, ...],
    ) -> None:
        """What ``write`` left in the index, as its ``_bulk`` item ``written`` answered (the
        concrete ``_index``, ``_seq_no`` and ``_primary_term``), is known for ``refs``.

        Only the ``kept`` fields of the body stay (those an ``_mget`` reads back for the cache
        keys of the state a write replaces), without ``_syncer``: the version (the write's own
        when its planner gave it, so nothing is parsed again) and the deleted flag are taken
        out of it, and its object is left to be freed with the batch.
        """
        if self.capacity <= 0:
            return
        body = write.body
        meta = body.get(SYNCER_FIELD) or {}
        document = IndexedDocument(  # positional: keywords cost a third more, per write
            write.version if write.version is not None else version_from_meta(meta),  # version
            bool(meta.get("deleted", False)),  # deleted
            int(written["_seq_no"]),
            int(written["_primary_term"]),
            {name: body[name] for name in kept if name in body and name != SYNCER_FIELD},
        )
        # One index name for every entry (each answer parsed its own copy of the text).
        index = sys.intern(str(written["_index"]))
        self.keep(refs, TargetState(index, document, True))  # known

    def keep(self, refs: Iterable[DocumentRef], state: TargetState) -> None:
        """``state`` is the known state of every one of ``refs`` (one state, shared)."""
        if self.capacity <= 0:
            return
        states = self._states
        with self._lock:
            for ref in refs:
                states[ref] = state
                states.move_to_end(ref)  # the newest end
            while len(states) > self.capacity:
                states.popitem(last=False)

    def forget(self, ref: DocumentRef) -> None:
        """Nothing is known of ``ref`` any more (its write failed or met another writer's)."""
        with self._lock:
            self._states.pop(ref, None)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()
