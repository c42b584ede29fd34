"""What the scan and the settling steps share to write the new index: a route's view of a
read, consistent re-reads by document id, rejected documents as dead letters, and the stop
(resumable) when a write failed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncer.config import TableConfig
from syncer.core.command_planners import route_named, routed_read
from syncer.core.documents import DocumentRef, ReadState, Settled
from syncer.core.keys import typed_key_from_id
from syncer.errors import DownstreamUnavailableError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.ports import Sinks
from syncer.sinks.search import ApplyResult

__all__ = [
    "outcomes_of",
    "raise_failed",
    "rejected_letter",
    "rereader",
    "route_named",  # pure, in syncer.core.command_planners; imported from here too
    "routed_read",
]


def outcomes_of(result: ApplyResult, status: Settled) -> list[tuple[DocumentRef, Any]]:
    return [(ref, o) for ref, o in result.outcomes.items() if o.status is status]


def raise_failed(result: ApplyResult, table: TableConfig) -> None:
    """A reindex never skips a document: stop (resumable) when any write failed."""
    failed = outcomes_of(result, Settled.FAILED)
    if failed:
        raise DownstreamUnavailableError(
            f"reindex of {table.name!r}: {len(failed)} document(s) could not be written "
            f"({failed[0][1].reason}); run the same command again to resume"
        )


def rereader(
    sinks: Sinks, table: TableConfig, key_types: Mapping[str, str]
) -> Callable[[Sequence[DocumentRef]], Mapping[DocumentRef, ReadState | str]]:
    """Read items again, by document id, for writes whose order against the index is unknown."""

    def reread(refs: Sequence[DocumentRef]) -> Mapping[DocumentRef, ReadState | str]:
        states: dict[DocumentRef, ReadState | str] = {}
        keys = {}
        for ref in refs:
            key = typed_key_from_id(ref[1], key_types)
            if key is None:
                states[ref] = f"document id {ref[1]!r} is not a key of {table.name!r}"
            else:
                keys[ref] = key
        if keys:
            found = sinks.items.read(table.name, list(keys.values()))
            states.update({ref: found[ref[1]] for ref in keys})
        return states

    return reread


def rejected_letter(table: TableConfig, ref: DocumentRef, reason: str) -> DeadLetter:
    return DeadLetter(
        {"reindex_document_id": ref[1]}, table.name, "DocumentRejectedError", reason, None
    )
