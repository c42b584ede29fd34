"""What every step of an export (or scan) reindex shares: a work item's view of the job
(``ExportJob``, made from the job record), a work item's counts and its progress in the job
(``loaded``), the result, the options' checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from syncer.core.jobs import Job, WorkProgress
from syncer.errors import ConfigError
from syncer.sinks.search import reindex_alias


@dataclass(frozen=True)
class ExportJob:
    """What every step needs, as plain JSON: the export, its files' total and the indices."""

    table: str
    export_uri: str
    targets: dict[str, str]  # route alias -> where its work items write (its reindex alias)
    old_indices: dict[str, str | None]  # route alias -> the index it pointed at
    read_version: dict[str, Any]  # the export's version, as ``_syncer`` records it
    item_count: int
    files: int
    segments: int = 0  # a scan's total segments (no export): the work items are segments
    started_at: float = 0.0  # when the reindex aliases appeared: the catch-up after the swap

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, job: Job) -> ExportJob:
        """A work item's view of ``job``: it writes through each route's reindex alias (so
        nothing it writes can re-create an index that ``--abandon`` dropped)."""
        return cls(
            table=job.table,
            export_uri=job.export_uri,
            targets={alias: reindex_alias(alias) for alias in job.targets},
            old_indices=job.old_indices,
            read_version=dict(job.read_version),
            item_count=job.item_count,
            files=len(job.work_items) if job.export_uri else 0,
            segments=job.segments,
            started_at=job.started_at,
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ExportJob:
        return cls(
            table=str(raw["table"]),
            export_uri=str(raw["export_uri"]),
            targets=dict(raw["targets"]),
            old_indices=dict(raw["old_indices"]),
            read_version=dict(raw["read_version"]),
            item_count=int(raw["item_count"]),
            files=int(raw["files"]),
            segments=int(raw.get("segments", 0)),
            started_at=float(raw.get("started_at", 0.0)),
        )


@dataclass(frozen=True)
class FileCounts:
    """What loading one work item did."""

    items: int = 0
    written: int = 0
    already_newer: int = 0
    rejected: int = 0

    def __add__(self, other: FileCounts) -> FileCounts:
        return FileCounts(
            self.items + other.items,
            self.written + other.written,
            self.already_newer + other.already_newer,
            self.rejected + other.rejected,
        )


def loaded(counts: FileCounts) -> WorkProgress:
    """A work item's progress in the job once it is loaded whole."""
    return WorkProgress(
        True, None, counts.items, counts.written, counts.already_newer, counts.rejected
    )


@dataclass(frozen=True)
class ExportReindexResult:
    indices: tuple[tuple[str, str, str | None], ...]  # (alias, new index, old index)
    files: int
    files_resumed: int
    counts: FileCounts
    carried: int
    absent_tombstoned: int
    seconds: float
    finish_seconds: float = 0.0  # the carry of the old index's live documents and the swap


def check_work_options(workers: int, page_size: int) -> None:
    """Refuse bad options before anything is created."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if page_size < 1:
        raise ConfigError(f"--page-size must be at least 1, not {page_size}")
