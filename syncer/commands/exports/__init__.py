"""Rebuild a table's index(es) from a DynamoDB full export in S3 (``syncer reindex --export``).

Three functions, which the local command runs in one process (``--workers 1``) or a process
pool, and which the reindex state machine of template.yaml runs as Lambda steps
(``syncer.reindex_handler``):

1. ``prepare_export``: read the export's summary (a full export only; another table's export or
   one older than the tombstone retention is refused, ``read_checked_export``), claim the job,
   create each route's next index and its reindex alias (``reindex.prepare_indices``), carry the
   old indices' tombstones. Returns the job's handle (the state machine passes its id and epoch).
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

Every step reads and conditionally writes the rebuild's job record (``syncer.core.jobs``), which
keeps each file's progress: a rerun from anywhere resumes with the files not loaded yet, or at
the phase the record names.

Each step has a module of its own: ``prepare`` (1), ``load`` (2), ``finish`` (3); ``job`` holds
what they share (a work item's view of the job, counts), ``runner`` the local runner of work
items, ``ownwrites`` a retried file's own writes and ``unloaded`` the items of lines load could
not index. This module runs a whole reindex locally and re-exports their public names.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from syncer.commands import reindex
from syncer.commands.exports.finish import FinishCounts, carry_live_documents, finish_export
from syncer.commands.exports.job import (
    ExportJob,
    ExportReindexResult,
    FileCounts,
    check_work_options,
    loaded,
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
    settle_page,
)
from syncer.commands.exports.ownwrites import ALREADY_HELD, OwnWrites
from syncer.commands.exports.prepare import (
    prepare_export,
    prepare_scan,
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
from syncer.commands.jobs import JobHandle
from syncer.commands.reindex.writes import rereader
from syncer.config import Config
from syncer.core.exports import DataFile
from syncer.core.jobs import LOAD, Progressed
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
    "FinishCounts",
    "OwnWrites",
    "PreparedPage",
    "WorkItem",
    "carry_live_documents",
    "check_work_options",
    "decode_lines",
    "decode_page",
    "finish_export",
    "load_file",
    "load_pages",
    "load_segment",
    "loaded",
    "poison_letter",
    "prepare_export",
    "prepare_scan",
    "read_ahead",
    "read_checked_export",
    "read_export",
    "reindex_from_export",
    "reindex_scan_in_workers",
    "rereader",
    "run_work_items",
    "s3_client",
    "settle_page",
]


def _load_job_items(
    config: Config,
    sinks: Sinks,
    s3: Any,
    handle: JobHandle,
    work: WorkItem,
    items: list[DataFile],
    *,
    workers: int,
    page_size: int,
    on_progress: Callable[[int], None],
) -> FileCounts:
    """The load phase: every work item the job has not done, each one's counts written to
    the job (fenced) once it is loaded."""
    if handle.job.phase != LOAD:
        return FileCounts()

    def done(data_file: DataFile, counts: FileCounts) -> None:
        handle.apply(Progressed(data_file.key, loaded(counts)))

    finished = {key for key, progress in handle.job.progress.items() if progress.done}
    return run_work_items(
        config,
        sinks,
        s3,
        work,
        ExportJob.of(handle.job).to_json(),
        items,
        finished,
        done,
        workers=workers,
        page_size=page_size,
        on_progress=on_progress,
    )


def _result(
    handle: JobHandle, counts: FileCounts, finish: FinishCounts, started: float, resumed: int
) -> ExportReindexResult:
    job = handle.job
    return ExportReindexResult(
        indices=tuple((r.alias, r.new_index, r.old_index) for r in job.rebuilds),
        files=len(job.work_items),
        files_resumed=resumed,
        counts=counts,
        carried=finish.carried,
        absent_tombstoned=finish.absent_tombstoned,
        seconds=time.monotonic() - started,
    )


def _progress_path_ignored(progress_path: Path | None) -> None:
    if progress_path is not None:
        warnings.warn(
            "progress_path is ignored: a rebuild's progress lives in its job record "
            "(syncer reindex --status); drop the argument",
            DeprecationWarning,
            stacklevel=3,
        )


def _done_items(handle: JobHandle) -> int:
    return sum(1 for progress in handle.job.progress.values() if progress.done)


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
    state machine's; every route's index, or only ``index``. A stopped scan job (threaded or
    not) resumes where its record says."""
    _progress_path_ignored(progress_path)
    check_work_options(workers, 1)
    reindex.check_scan_arguments(segments, page_size)
    started = time.monotonic()
    handle = prepare_scan(config, sinks, table_name, segments, index=index)
    resumed = _done_items(handle)
    items = [_segment_item(int(key.removeprefix("segment-"))) for key in handle.job.work_items]
    with handle.holding():
        counts = _load_job_items(
            config,
            sinks,
            None,
            handle,
            _load_segment_item,
            items,
            workers=max(2, workers),  # one worker is the threaded `syncer reindex`
            page_size=page_size,
            on_progress=on_progress,
        )
        finish = finish_export(config, sinks, handle)
    return _result(handle, counts, finish, started, resumed)


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
    _progress_path_ignored(progress_path)
    check_work_options(workers, page_size)
    started = time.monotonic()
    s3 = s3 if s3 is not None else s3_client()
    handle, files = prepare_export(config, sinks, s3, table_name, export_uri, index=index)
    resumed = _done_items(handle)
    view = ExportJob.of(handle.job)
    inline_progress = on_progress if workers <= 1 else (lambda _: None)

    def work(
        config: Config,
        sinks: Sinks,
        s3: Any,
        raw_job: Mapping[str, Any],
        data_file: DataFile,
        page_size: int,
    ) -> FileCounts:
        return load_file(config, sinks, s3, view, data_file, page_size, inline_progress)

    with handle.holding():
        counts = _load_job_items(
            config,
            sinks,
            s3,
            handle,
            work if workers <= 1 else _load_export_file,
            files,
            workers=workers,
            page_size=page_size,
            on_progress=on_progress if workers > 1 else (lambda _: None),
        )
        finish_started = time.monotonic()
        finish = finish_export(config, sinks, handle)
        finish_seconds = time.monotonic() - finish_started
    return dataclasses.replace(
        _result(handle, counts, finish, started, resumed), finish_seconds=finish_seconds
    )
