"""A reindex's options and its results; its state is the job record (``syncer.core.jobs``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError

DEFAULT_PAGE_SIZE = 500
MAX_SEGMENTS = 1_000_000  # DynamoDB's limit on a Scan's TotalSegments


@dataclass(frozen=True, slots=True)
class SegmentProgress:
    """One scanned page of one segment: where the segment goes on, and what the page did.

    ``last_key`` is JSON-safe (Lambda's typed form) and None once the segment is finished; pass
    it as ``start_key`` to resume the segment after it.
    """

    segment: int
    last_key: dict[str, Any] | None
    seen: int
    written: int
    already_newer: int
    rejected: int


@dataclass(frozen=True, slots=True)
class SegmentCounts:
    """What a run of ``scan_segment`` (or one page of it) did, summed."""

    seen: int = 0
    written: int = 0
    already_newer: int = 0
    rejected: int = 0

    def __add__(self, other: SegmentCounts) -> SegmentCounts:
        return SegmentCounts(
            self.seen + other.seen,
            self.written + other.written,
            self.already_newer + other.already_newer,
            self.rejected + other.rejected,
        )


def _ignore(_: SegmentProgress) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class ReindexOptions:
    """How ``reindex_table`` runs; checked when built, so nothing is created with a bad one."""

    segments: int = 4
    page_size: int = DEFAULT_PAGE_SIZE
    state_path: Path | None = None  # deprecated, ignored: the job record keeps the progress
    index: str | None = None  # rebuild only this route's index (default: every index)
    delete_old: bool = False
    delete_grace_s: float = 0.0
    on_progress: Callable[[SegmentProgress], None] = _ignore
    on_resume: Callable[[int], None] = lambda _: None  # items scanned before a crash, once

    def __post_init__(self) -> None:
        check_scan_arguments(self.segments, self.page_size)
        if self.state_path is not None:
            warnings.warn(
                "ReindexOptions.state_path is ignored: a reindex's progress lives in its job "
                "record (syncer reindex --status); drop the argument",
                DeprecationWarning,
                stacklevel=3,
            )
        if not self.delete_grace_s >= 0:
            raise ConfigError(f"delete grace must be 0 s or more, not {self.delete_grace_s}")


def check_scan_arguments(segments: int, page_size: int) -> None:
    """Refuse what DynamoDB's Scan would refuse only after the new index was created."""
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ConfigError(
            f"segments must be between 1 and {MAX_SEGMENTS} (DynamoDB's TotalSegments), "
            f"not {segments}"
        )
    if page_size < 1:
        raise ConfigError(f"page size must be 1 or more (a Scan's Limit), not {page_size}")


# What each way of running ``syncer reindex`` does not do: given, such an option is refused
# rather than silently ignored (issue 24, item 4). Named as on the command line.
IGNORED_BY = {
    "--abandon": ("--export", "--workers", "--segments", "--page-size", "--delete-old"),
    "--export": ("--segments", "--delete-old", "--delete-grace-s"),
    "--workers": ("--delete-old", "--delete-grace-s"),
}
_WHY = {
    "--abandon": "--abandon only drops the running reindex (of --index, or of every index)",
    "--export": "--export loads the export's files instead of scanning, and keeps the old "
    "index (write-blocked) after the swap",
    "--workers": "--workers N (N > 1) runs the scan's segments in processes and keeps the old "
    "index (write-blocked) after the swap; delete it yourself once searches moved on",
}


def check_option_combination(
    given: Collection[str], *, abandon: bool, export: bool, workers: int
) -> None:
    """Refuse the options ``given`` on the command line that this kind of reindex ignores."""
    mode = "--abandon" if abandon else "--export" if export else "--workers" if workers > 1 else ""
    if not mode:
        return
    ignored = [option for option in IGNORED_BY[mode] if option in given]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} cannot be used with {mode}: {_WHY[mode]}")


@dataclass(frozen=True)
class ReindexResult:
    indexed: int
    already_newer: int
    rejected: int
    seconds: float
    old_deleted: bool
    tombstones_carried: int = 0
    absent_tombstoned: int = 0
    caught_up: int = 0  # tombstones the catch-up after the swap wrote
    # (alias, new index, old index) of every index rebuilt; one unless the table has routes
    indices: tuple[tuple[str, str, str | None], ...] = ()
