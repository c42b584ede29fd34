"""Shared document types: what the index holds for a key and the conditional write that changes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

from syncer.core.versions import Version, version_from_meta

SYNCER_FIELD = "_syncer"
DocumentRef = tuple[str, str]  # (alias or concrete index, document id)


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """What the index holds for one key now: enough to order a new write against it."""

    version: Version
    deleted: bool
    seq_no: int
    primary_term: int
    fields: Mapping[str, Any]

    @property
    def sequence_number(self) -> int | None:
        return self.version.seq


def indexed_document(source: Mapping[str, Any], seq_no: int, primary_term: int) -> IndexedDocument:
    """An ``IndexedDocument`` from a document's ``_source`` and its concurrency numbers."""
    meta = source.get(SYNCER_FIELD) or {}
    return IndexedDocument(
        version=version_from_meta(meta),
        deleted=bool(meta.get("deleted", False)),
        seq_no=seq_no,
        primary_term=primary_term,
        fields=source,
    )


@dataclass(frozen=True, slots=True)
class TargetState:
    """Where a document lives behind an alias (the concrete index) and what it holds.

    ``known``: taken from ``KnownStates`` (``syncer.core.known``), not read: a write planned
    against it is checked by OpenSearch, a decision to write nothing must be read first.
    """

    index: str
    document: IndexedDocument | None
    known: bool = False


class WriteKind(Enum):
    INDEX = "index"
    TOMBSTONE = "tombstone"
    DELETE = "delete"  # a real delete: only purge-tombstones removes documents


@dataclass(frozen=True, slots=True)
class DocumentWrite:
    """One conditional write of a document (or its tombstone)."""

    ref: DocumentRef
    kind: WriteKind
    body: Mapping[str, Any]
    expected: IndexedDocument | None  # the state it was planned against
    # The version ``body`` records (its ``_syncer``), when the planner had it at hand: what
    # ``KnownStates`` keeps of the write without parsing the body again.
    version: Version | None = field(default=None, compare=False)


class Verdict(Enum):
    """What a planner says when it has no write to make."""

    SKIP = "skip"  # the index already holds this state or a newer one
    REREAD = "reread"  # the versions cannot be ordered: read the item from the table again


Decision: TypeAlias = DocumentWrite | Verdict  # what a planner answers for one ref


@dataclass(frozen=True, slots=True)
class ReadState:
    """An item as a consistent read of the table found it (None: no such item), and when."""

    item: Mapping[str, Any] | None
    version: Version


class Settled(Enum):
    """How one ref ended in ``apply_writes``."""

    WRITTEN = "written"  # a document (INDEX) is in place
    TOMBSTONED = "tombstoned"
    DELETED = "deleted"  # a real delete (purge)
    SKIPPED = "skipped"  # nothing to do: the index holds this state or a newer one
    CONFLICT = "conflict"  # a planner that does not re-plan (purge) met a newer write
    REJECTED = "rejected"  # permanent: this document can never be written as it is
    FAILED = "failed"  # transient, retries exhausted or out of time: report and retry later
