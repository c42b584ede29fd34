"""What a write round is asked and what it answers: shared by the planners, the pipeline and
the search adapter, so that no planner imports the adapter (pure)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from syncer.core.deadline import Deadline
from syncer.core.documents import (
    Decision,
    DocumentRef,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    Settled,
    TargetState,
    WriteKind,
)
from syncer.core.known import KnownStates

# Why a ref of an optional (reindex) alias that does not exist was skipped.
NO_REINDEX = "no reindex running"

SETTLED_BY_KIND = {
    WriteKind.INDEX: Settled.WRITTEN,
    WriteKind.TOMBSTONE: Settled.TOMBSTONED,
    WriteKind.DELETE: Settled.DELETED,
}


@dataclass(frozen=True, slots=True)
class RefOutcome:
    status: Settled
    reason: str = ""


# Every status without a reason, and the skip of an optional alias that does not exist.
_SHARED_OUTCOMES = {(status, ""): RefOutcome(status) for status in Settled} | {
    (Settled.SKIPPED, NO_REINDEX): RefOutcome(Settled.SKIPPED, NO_REINDEX)
}


@dataclass(slots=True)
class ApplyResult:
    """One outcome per ref, the first indexed state seen per ref, and what it cost."""

    outcomes: dict[DocumentRef, RefOutcome] = field(default_factory=dict)
    observed: dict[DocumentRef, IndexedDocument] = field(default_factory=dict)
    bulk_seconds: float = 0.0
    rereads: int = 0
    known: int = 0  # refs planned against a known state, unread (``WriteOptions.known``)
    known_stale: int = 0  # of those, read after all: a 409, or a verdict to write nothing

    def count(self, status: Settled) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome.status is status)

    def status(self, ref: DocumentRef) -> Settled | None:
        outcome = self.outcomes.get(ref)
        return None if outcome is None else outcome.status

    def settle(self, ref: DocumentRef, status: Settled, reason: str = "") -> None:
        # Outcomes are frozen: the usual ones are shared rather than built once per ref.
        shared = _SHARED_OUTCOMES.get((status, reason))
        self.outcomes[ref] = shared if shared is not None else RefOutcome(status, reason)


# A planner answers, for one ref, its target's state and (after ``Verdict.REREAD``) the item read
# again: the conditional write to make, or why there is none. Pure; ``PoisonRecordError`` rejects.
Planner = Callable[[DocumentRef, TargetState, ReadState | None], Decision]
# The items of refs read again from the table (consistently), or why they could not be.
Rereader = Callable[[Sequence[DocumentRef]], Mapping[DocumentRef, ReadState | str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOptions:
    """How ``write_documents`` goes about one call; every field has the usual default.

    ``reread`` answers ``Verdict.REREAD`` with the item as the table holds it now; ``fields``
    are read back with ``_syncer`` (for cache keys); refs of ``optional_aliases`` that do not
    exist are skipped; ``read_first=False`` assumes absence in the first round (a scan into a
    new index), ``absent_first`` for those refs only (a stream INSERT's: its ``create`` is
    refused with a 409 when anything is there, then read and planned again); ``refresh`` goes
    with every ``_bulk``; ``replan_conflicts=False`` settles a 409 as ``CONFLICT`` instead of
    planning again; ``require_alias`` writes every ref through its alias, which must exist (a
    rebuild's: a dropped index never comes back by name). ``known`` (the stream path's): plan
    the first round against the states this process last read or wrote, where they are known
    and their alias still resolves to the same index, instead of reading them; the states read
    and written are kept there (``syncer.core.known``).
    """

    reread: Rereader | None = None
    fields: tuple[str, ...] = ()
    optional_aliases: frozenset[str] = frozenset()
    deadline: Deadline | None = None
    read_first: bool = True
    absent_first: Container[DocumentRef] = frozenset()
    known: KnownStates | None = None
    refresh: str | None = None
    replan_conflicts: bool = True
    require_alias: bool = False


class ItemStatus(Enum):
    """How one ``_bulk`` item ended (``syncer.sinks.search.bulk.item_result`` is the table)."""

    OK = "ok"
    CONFLICT = "conflict"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item's status; a write that succeeded also says where it landed and its new
    ``_seq_no`` and ``_primary_term`` (``written``), which ``KnownStates`` keeps."""

    status: ItemStatus
    reason: str = ""
    # the item's answer when a document was written: ``_index``, ``_seq_no``, ``_primary_term``
    # (the parsed object itself: thousands per batch, nothing copied)
    written: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SentChunk:
    """One request's writes and each one's result; ``unencodable`` never left (no JSON)."""

    writes: Sequence[DocumentWrite]
    results: Mapping[DocumentRef, ItemResult]
    seconds: float = 0.0
    unencodable: Sequence[tuple[DocumentWrite, str]] = ()


class WriteRounds(Protocol):
    """What ``write_documents`` needs of a search store: its attempts, one read, one send.

    The OpenSearch adapter (``SearchSink``) and the tests' in-memory fake both provide it, and
    ``syncer.core.rounds.write_documents`` (the loop: read, plan, send, settle, again for what
    is left) runs over either.
    """

    def attempts(self, deadline: Deadline | None) -> Iterable[AbstractContextManager[Any]]:
        """The rounds the retry policy allows; an exception inside one asks for the next."""
        ...

    def read_round(
        self,
        refs: Sequence[DocumentRef],
        fields: Sequence[str],
        optional_aliases: frozenset[str],
        deadline: Deadline | None,
        *,
        read: bool,
        absent: Container[DocumentRef] = frozenset(),
        exists: Mapping[str, bool] | None = None,
    ) -> dict[DocumentRef, TargetState]:
        """Each ref's concrete index and state (taken as absent when not ``read``, and for the
        refs in ``absent``); refs of optional aliases that do not exist are left out, and
        ``exists`` already says for some of them (asked in this round). One attempt."""
        ...

    def send_round(
        self,
        writes: Sequence[DocumentWrite],
        refresh: str | None,
        deadline: Deadline | None,
        aliases: frozenset[str] = frozenset(),
    ) -> Iterator[SentChunk]:
        """Send the writes (in requests cut by count and bytes), a chunk of results at a time.

        A write into one of ``aliases`` goes through the alias: it must fail when the alias
        does not exist, never create an index by that name."""
        ...

    def failure(self, error: Exception) -> str:
        """Why the rounds stopped on ``error`` (logged), for the refs left; a bug re-raised."""
        ...

    def current_indices(
        self, aliases: Collection[str], deadline: Deadline | None
    ) -> Mapping[str, str | None]:
        """The one concrete index each of ``aliases`` resolves to now (None: it names several);
        an alias that does not exist is left out. One attempt."""
        ...
