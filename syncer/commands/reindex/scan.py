"""The scan: a segment of a parallel DynamoDB Scan as a work item (``scan_segment``), each page
written into the new indices with its read version; every unfinished segment of a job on local
threads, its progress written to the job after every page."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from syncer.commands.jobs import JobHandle
from syncer.commands.reindex.state import (
    DEFAULT_PAGE_SIZE,
    ReindexOptions,
    SegmentCounts,
    SegmentProgress,
    _ignore,
    check_scan_arguments,
)
from syncer.commands.reindex.writes import (
    outcomes_of,
    raise_failed,
    rejected_letter,
    rereader,
    routed_read,
)
from syncer.config import Config, TableConfig
from syncer.core.attributes import decode_item
from syncer.core.command_planners import ScanPlanner
from syncer.core.documents import DocumentRef, ReadState, Settled
from syncer.core.jobs import Progressed, WorkProgress
from syncer.core.keys import boto_key, lambda_key
from syncer.core.records import document_id
from syncer.core.rounds import write_documents
from syncer.core.routes import document_in, route_item
from syncer.core.versions import Version
from syncer.errors import ConfigError, PoisonRecordError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.ports import Sinks
from syncer.sinks.search import WriteOptions, reindex_alias

MAX_SEGMENT_THREADS = 64  # segments scanned at once by one process; the rest wait their turn


def _index_page(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    targets: Mapping[str, str],
    key_types: Mapping[str, str],
    raw_items: list[dict[str, Any]],
    version: Version,
) -> SegmentCounts:
    """Write each scanned item into the new index of its route (``targets``: alias -> index).

    A write happens where it is newer than the new index's state (``apply_writes``); items
    that no rebuilt route selects, or that a transform keeps out, are not written.
    """
    scanned: dict[DocumentRef, ReadState] = {}
    views: dict[DocumentRef, TableConfig] = {}
    letters: list[DeadLetter] = []
    for raw in raw_items:
        try:
            item = decode_item(raw)
            doc_id = document_id({name: item[name] for name in key_types})
            state = route_item(table, item)
            if state.route is None or state.route.index not in targets:
                continue
            document = document_in(state, state.route)
        except PoisonRecordError as error:
            letters.append(
                DeadLetter({"reindex_item": raw}, table.name, "PoisonRecordError", str(error), None)
            )
            continue
        if document is not None:
            ref = (targets[state.route.index], doc_id)
            scanned[ref] = ReadState(document, version)
            views[ref] = table.route_table(state.route)
    shapes = {
        targets[route.index]: routed_read(table, route)
        for route in table.resolved_routes
        if route.index in targets
    }
    result = write_documents(
        sinks.search,
        list(scanned),
        ScanPlanner(scanned, views, shapes),
        # a new index: create first, read only what conflicts; through its reindex alias only
        WriteOptions(
            reread=rereader(sinks, table, key_types), read_first=False, require_alias=True
        ),
    )
    letters.extend(
        rejected_letter(table, ref, o.reason) for ref, o in outcomes_of(result, Settled.REJECTED)
    )
    raise_failed(result, table)
    if letters:
        sinks.letters.write(letters)
    written = result.count(Settled.WRITTEN) + result.count(Settled.TOMBSTONED)
    return SegmentCounts(len(raw_items), written, result.count(Settled.SKIPPED), len(letters))


def scan_segment(
    config: Config,
    sinks: Sinks,
    table_name: str,
    *,
    targets: Mapping[str, str],
    segment: int,
    total_segments: int,
    start_key: Mapping[str, Any] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_page: Callable[[SegmentProgress], None] = _ignore,
) -> SegmentCounts:
    """Scan one segment into the new indices (``targets``: route alias -> new index): a work item.

    Idempotent: a page written again replaces only older states, so re-running a segment (or
    its last page after a crash) rewrites nothing newer. Resumable: ``start_key`` is a page's
    ``SegmentProgress.last_key``. ``on_page`` hears of each page once it is written; raising
    there stops the segment after that page.
    """
    check_scan_arguments(total_segments, page_size)
    if not 0 <= segment < total_segments:
        raise ConfigError(f"segment must be between 0 and {total_segments - 1}, not {segment}")
    table = config.require_table(table_name)
    key_types = sinks.items.key_schema(table.name)
    totals = SegmentCounts()
    pages = sinks.items.scan(
        table.name,
        segment=segment,
        total_segments=total_segments,
        start_key=boto_key(start_key) if start_key else None,
        page_size=page_size,
    )
    for page in pages:
        counts = _index_page(sinks, config, table, targets, key_types, page.items, page.version)
        totals += counts
        last_key = lambda_key(page.last_key) if page.last_key else None
        on_page(
            SegmentProgress(
                segment,
                last_key,
                counts.seen,
                counts.written,
                counts.already_newer,
                counts.rejected,
            )
        )
    return totals


def segment_key(segment: int) -> str:
    """A scan segment's work-item key in the job."""
    return f"segment-{segment}"


def scan_job_segments(
    config: Config, sinks: Sinks, handle: JobHandle, options: ReindexOptions
) -> SegmentCounts:
    """Every unfinished segment of the job on local threads; each page's progress written to
    the job (fenced) once the page is written, so a rerun anywhere resumes after it."""
    job = handle.job
    targets = {alias: reindex_alias(alias) for alias in job.targets}  # a dropped one stays gone
    lock = threading.Lock()
    totals = [SegmentCounts()]

    def saved(progress: SegmentProgress) -> None:
        with lock:
            totals[0] += SegmentCounts(
                progress.seen, progress.written, progress.already_newer, progress.rejected
            )
        work = WorkProgress(
            progress.last_key is None,
            progress.last_key,
            progress.seen,
            progress.written,
            progress.already_newer,
            progress.rejected,
        )
        handle.apply(Progressed(segment_key(progress.segment), work))
        options.on_progress(progress)

    def run(segment: int) -> None:
        scan_segment(
            config,
            sinks,
            job.table,
            targets=targets,
            segment=segment,
            total_segments=job.segments,
            start_key=job.progress.get(segment_key(segment), WorkProgress()).last_key,
            page_size=options.page_size,
            on_page=saved,
        )

    left = [int(key.removeprefix("segment-")) for key in job.items_left]
    if left:
        threads = min(len(left), MAX_SEGMENT_THREADS)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reindex") as pool:
            for future in [pool.submit(run, segment) for segment in left]:
                future.result()
    return totals[0]
