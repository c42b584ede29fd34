"""Rebuild a table's index(es) from a DynamoDB full export in S3 (``syncer reindex --export``).

Three functions, which the local command runs in one process (``--workers 1``) or a process
pool, and which the reindex state machine of template.yaml runs as Lambda steps
(``syncer.reindex_handler``):

1. ``prepare_export``: read the export's summary (a full export only), create each route's next
   index and its reindex alias (``reindex.prepare``), carry the old indices' tombstones
   (``reindex.carry_tombstones``). Returns an ``ExportJob``, plain JSON for Step Functions.
2. ``load_file``: one data file of ``manifest-files.json``, a work item that is independent and
   idempotent: MD5 and item count checked before any line is applied, then streamed, each item
   written into the new index of its route with the export's read version through
   ``apply_writes(read_first=False)`` (an optimistic ``create``; only the 409s of the stream's
   own writes are read and planned again). A failed file is read again whole, up to
   ``FILE_ATTEMPTS`` times.
3. ``finish_export``: only when every file is loaded. The old index's live documents are
   carried: a change the live index learned after the export's lower bound replaces an older
   state in the new index, and an item the export does not hold gets a tombstone with the
   export's read version (or the old state, whichever is newer; re-read when unknown). Then
   each alias is swapped (``reindex.swap_alias``).

Locally, the state of each file is kept in a state file after it is loaded, so a rerun resumes
with the files not loaded yet.

Each step has a module of its own: ``prepare`` (1), ``load`` (2), ``finish`` (3); ``job`` holds
what they share (the job, counts, the progress file) and ``runner`` the local runner of work
items. This module runs a whole reindex locally and re-exports their public names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from syncer.commands import reindex
from syncer.commands.exports.finish import FinishCounts, carry_live_documents, finish_export
from syncer.commands.exports.job import (
    ExportJob,
    ExportReindexResult,
    FileCounts,
    FileProgress,
    check_work_options,
    default_progress_path,
    load_progress,
    rebuild_state_path,
    save_progress,
)
from syncer.commands.exports.load import (
    DEFAULT_PAGE_SIZE,
    FILE_ATTEMPTS,
    FILE_RETRY_BACKOFF_S,
    WRITES_IN_FLIGHT,
    DecodedPage,
    PreparedPage,
    decode_lines,
    decode_page,
    load_file,
    load_pages,
    load_segment,
    poison_letter,
    read_ahead,
    rereader,
    settle_page,
)
from syncer.commands.exports.ownwrites import ALREADY_HELD, OwnWrites
from syncer.commands.exports.prepare import (
    prepare_export,
    prepare_scan,
    prepare_targets,
    read_checked_export,
    read_export,
    s3_client,
)
from syncer.commands.exports.runner import (
    WorkItem,
    _load_export_file,
    _load_segment_item,
    _segment_item,
    run_work_items,
)
from syncer.config import Config
from syncer.core.exports import DataFile
from syncer.errors import SyncerError
from syncer.sinks.ports import Sinks

__all__ = [
    "ALREADY_HELD",
    "DEFAULT_PAGE_SIZE",
    "FILE_ATTEMPTS",
    "FILE_RETRY_BACKOFF_S",
    "WRITES_IN_FLIGHT",
    "DecodedPage",
    "ExportJob",
    "ExportReindexResult",
    "FileCounts",
    "FileProgress",
    "FinishCounts",
    "OwnWrites",
    "PreparedPage",
    "WorkItem",
    "carry_live_documents",
    "check_work_options",
    "decode_lines",
    "decode_page",
    "default_progress_path",
    "finish_export",
    "load_file",
    "load_pages",
    "load_progress",
    "load_segment",
    "poison_letter",
    "prepare_export",
    "prepare_scan",
    "prepare_targets",
    "read_ahead",
    "read_checked_export",
    "read_export",
    "rebuild_state_path",
    "reindex_from_export",
    "reindex_scan_in_workers",
    "rereader",
    "run_work_items",
    "s3_client",
    "save_progress",
    "settle_page",
]


def reindex_scan_in_workers(
    config: Config,
    sinks: Sinks,
    table_name: str,
    *,
    segments: int,
    workers: int,
    progress_path: Path | None = None,
    on_progress: Callable[[int], None] = lambda _: None,
    index: str | None = None,
    page_size: int = reindex.DEFAULT_PAGE_SIZE,
) -> ExportReindexResult:
    """``syncer reindex --workers N`` without an export: the scan's segments (of ``page_size``
    items a page) as work items in a process pool, with the same prepare and finish as the
    state machine's; every route's index, or only ``index``."""
    check_work_options(workers, 1)
    reindex.check_scan_arguments(segments, page_size)
    started = time.monotonic()
    progress_path = progress_path or default_progress_path(table_name)
    job = prepare_scan(config, sinks, table_name, segments, progress_path, index)
    progress = load_progress(progress_path, job.table, f"scan:{segments}")
    items = [_segment_item(segment) for segment in range(segments)]
    resumed = sum(1 for item in items if item.key in progress.done)
    counts = run_work_items(
        config,
        sinks,
        None,
        _load_segment_item,
        job.to_json(),
        items,
        progress,
        progress_path,
        workers=max(2, workers),  # one worker is the threaded `syncer reindex`
        page_size=page_size,
        on_progress=on_progress,
    )
    finish = finish_export(config, sinks, job)
    progress_path.unlink(missing_ok=True)
    rebuild_state_path(progress_path).unlink(missing_ok=True)
    return ExportReindexResult(
        indices=tuple(
            (alias, new, job.old_indices.get(alias)) for alias, new in job.targets.items()
        ),
        files=segments,
        files_resumed=resumed,
        counts=counts,
        carried=finish.carried,
        absent_tombstoned=finish.absent_tombstoned,
        seconds=time.monotonic() - started,
    )


def reindex_from_export(
    config: Config,
    sinks: Sinks,
    table_name: str,
    export_uri: str,
    *,
    workers: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress_path: Path | None = None,
    s3: Any = None,
    on_progress: Callable[[int], None] = lambda _: None,
    index: str | None = None,
) -> ExportReindexResult:
    """``syncer reindex --export``: prepare, every file loaded, then finish (module docstring);
    every route's index, or only ``index``."""
    check_work_options(workers, page_size)
    started = time.monotonic()
    s3 = s3 if s3 is not None else s3_client()
    progress_path = progress_path or default_progress_path(table_name)
    job, files = prepare_export(config, sinks, s3, table_name, export_uri, progress_path, index)
    progress = load_progress(progress_path, job.table, export_uri)
    resumed = sum(1 for data_file in files if data_file.key in progress.done)
    inline_progress = on_progress if workers <= 1 else (lambda _: None)

    def work(
        config: Config,
        sinks: Sinks,
        s3: Any,
        raw_job: Mapping[str, Any],
        data_file: DataFile,
        page_size: int,
    ) -> FileCounts:
        return load_file(config, sinks, s3, job, data_file, page_size, inline_progress)

    counts = run_work_items(
        config,
        sinks,
        s3,
        work if workers <= 1 else _load_export_file,
        job.to_json(),
        files,
        progress,
        progress_path,
        workers=workers,
        page_size=page_size,
        on_progress=on_progress if workers > 1 else (lambda _: None),
    )
    missing = [data_file.key for data_file in files if data_file.key not in progress.done]
    if missing:
        raise SyncerError(f"{len(missing)} export file(s) not loaded, e.g. {missing[0]}")
    finish_started = time.monotonic()
    finish = finish_export(config, sinks, job)
    finish_seconds = time.monotonic() - finish_started
    progress_path.unlink(missing_ok=True)
    rebuild_state_path(progress_path).unlink(missing_ok=True)
    return ExportReindexResult(
        indices=tuple(
            (alias, new, job.old_indices.get(alias)) for alias, new in job.targets.items()
        ),
        files=len(files),
        files_resumed=resumed,
        counts=counts,
        carried=finish.carried,
        absent_tombstoned=finish.absent_tombstoned,
        seconds=time.monotonic() - started,
        finish_seconds=finish_seconds,
    )
