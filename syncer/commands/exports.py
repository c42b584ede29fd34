"""Rebuild a table's index(es) from a DynamoDB full export in S3 (``syncer reindex --export``).

Three functions, which the local command runs in one process (``--workers 1``) or a process
pool, and which the reindex state machine of template.yaml runs as Lambda steps
(``syncer.reindex_handler``):

1. ``prepare_export``: read the export's summary (a full export only), create each route's next
   index and its reindex alias (``reindex.prepare``), carry the old indices' tombstones
   (``reindex.carry_tombstones``). Returns an ``ExportJob``, plain JSON for Step Functions.
2. ``load_file``: one data file of ``manifest-files.json``, a work item that is independent and
   idempotent: streamed, each item written into the new index of its route with the export's
   read version through ``apply_writes(read_first=False)`` (an optimistic ``create``; only the
   409s of the stream's own writes are read and planned again). MD5 and item count checked at
   the end; a failed file is read again whole, up to ``FILE_ATTEMPTS`` times.
3. ``finish_export``: only when every file is loaded. The old index's live documents are
   carried: a change the live index learned after the export's lower bound replaces an older
   state in the new index, and an item the export does not hold gets a tombstone with the
   export's read version (or the old state, whichever is newer; re-read when unknown). Then
   each alias is swapped (``reindex.swap_alias``).

Locally, the state of each file is kept in a state file after it is loaded, so a rerun resumes
with the files not loaded yet.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar

from syncer.commands import reindex
from syncer.commands.reindex.writes import _rereader
from syncer.config import Config, TableConfig
from syncer.core import jsoncodec
from syncer.core.attributes import decode_item
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentRef,
    DocumentWrite,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.exports import DataFile, ExportFormatError, ExportLine, ExportSummary, parse_line
from syncer.core.plan import order_verdict, plan_read_state, plan_scanned, tombstone_body
from syncer.core.records import document_id
from syncer.core.routes import document_in, route_item
from syncer.core.versions import Order, Version, compare, version_from_meta
from syncer.errors import ConfigError, DownstreamUnavailableError, PoisonRecordError, SyncerError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.exports import ExportFileError, ExportReader
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Guarded
from syncer.sinks.search import ApplyResult, apply_writes, scroll_pages

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_PAGE_SIZE = 1000
FILE_ATTEMPTS = 3
# Pages of one file written at once: one page's documents are serialized while another's
# _bulk is in flight. Pages hold different items, so their order does not matter.
WRITES_IN_FLIGHT = 2
FILE_RETRY_BACKOFF_S = 1.0


@dataclass(frozen=True)
class ExportJob:
    """What every step needs, as plain JSON: the export, its files' total and the indices."""

    table: str
    export_uri: str
    targets: dict[str, str]  # route alias -> new concrete index
    old_indices: dict[str, str | None]  # route alias -> the index it pointed at
    read_version: dict[str, Any]  # the export's version, as ``_syncer`` records it
    item_count: int
    files: int
    segments: int = 0  # a scan's total segments (no export): the work items are segments
    started_at: float = 0.0  # when the reindex aliases appeared: the catch-up after the swap

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

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


@dataclass
class FileProgress:
    """The local resume file: which work items of which export are done, and their counts."""

    table: str
    export_uri: str
    done: dict[str, dict[str, int]] = field(default_factory=dict)  # file key -> FileCounts
    finished: bool = False


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


def s3_client() -> Any:
    """The S3 client of export reads: botocore's standard retries on top of the file's own."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3", config=BotoConfig(retries={"mode": "standard", "max_attempts": 3}, read_timeout=30)
    )


def _save_json(path: Path, value: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(jsoncodec.dumps(value))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def load_progress(path: Path, table: str, export_uri: str) -> FileProgress:
    """The saved progress of this export, or a fresh one (another export starts over)."""
    if path.exists():
        raw = jsoncodec.loads(path.read_bytes())
        if raw.get("table") == table and raw.get("export_uri") == export_uri:
            return FileProgress(**raw)
    return FileProgress(table, export_uri)


def save_progress(progress: FileProgress, path: Path) -> None:
    _save_json(path, asdict(progress))


def default_progress_path(table: str) -> Path:
    return Path(f".syncer-export-{table}.json")


def rebuild_state_path(progress_path: Path) -> Path:
    """The reindex state (``reindex.prepare``) of a job, beside its files' progress."""
    return progress_path.with_name(f"{progress_path.stem}.reindex{progress_path.suffix}")


def read_export(s3: Any, export_uri: str) -> tuple[ExportReader, ExportSummary, list[DataFile]]:
    reader = ExportReader(s3, export_uri)
    summary = reader.summary()
    return reader, summary, reader.data_files(summary)


def prepare_targets(
    config: Config, sinks: Sinks, table: TableConfig, segments: int, progress_path: Path
) -> reindex.ReindexState:
    """Every route's new index and reindex alias (``reindex.prepare``), tombstones carried once."""
    client = Guarded(sinks.opensearch, sinks.opensearch_guard)
    key_types = sinks.items.key_schema(table.name)
    path = rebuild_state_path(progress_path)
    state = reindex.prepare(client, table, segments, path)
    for rebuild in state.rebuilds:
        if rebuild.tombstones_carried is None:
            rebuild.tombstones_carried = 0
            if rebuild.old_index:
                route = next(r for r in table.resolved_routes if r.index == rebuild.alias)
                rebuild.tombstones_carried = reindex.carry_tombstones(
                    sinks,
                    config,
                    table.route_table(route),
                    rebuild.old_index,
                    rebuild.new_index,
                    key_types,
                    shape=_routed_shape(table, route.index),
                )
            reindex.save_state(state, path)
    return state


def prepare_export(
    config: Config, sinks: Sinks, s3: Any, table_name: str, export_uri: str, progress_path: Path
) -> tuple[ExportJob, list[DataFile]]:
    """Step 1: the new indices and reindex aliases, tombstones carried, the files listed."""
    table = config.require_table(table_name)
    _, summary, files = read_export(s3, export_uri)
    if summary.is_incremental:
        raise ExportFormatError(
            f"{export_uri} is an incremental export: a new index needs a full export "
            "(apply incremental exports to the live index with `syncer backfill`)"
        )
    state = prepare_targets(config, sinks, table, 1, progress_path)
    job = ExportJob(
        table=table.name,
        export_uri=export_uri,
        targets=state.targets,
        old_indices={rebuild.alias: rebuild.old_index for rebuild in state.rebuilds},
        read_version=summary.read_version.to_meta(),
        item_count=summary.item_count,
        files=len(files),
        started_at=state.started_at,
    )
    return job, files


def prepare_scan(
    config: Config, sinks: Sinks, table_name: str, segments: int, progress_path: Path
) -> ExportJob:
    """Step 1 of a table without PITR: the same indices; the work items are scan segments."""
    if segments < 1:
        raise ConfigError(f"segments must be at least 1, not {segments}")
    table = config.require_table(table_name)
    state = prepare_targets(config, sinks, table, segments, progress_path)
    olds = {rebuild.alias: rebuild.old_index for rebuild in state.rebuilds}
    return ExportJob(table.name, "", state.targets, olds, {}, 0, 0, segments, state.started_at)


def load_segment(config: Config, sinks: Sinks, job: ExportJob, segment: int) -> FileCounts:
    """Step 2 of a scan, one work item: a parallel-scan segment written into the new indices.

    ``reindex.scan_segment`` is the scan reindex's own worker (it writes with read versions),
    so both paths write alike; ``finish_export`` settles the absent reads before the swap.
    """
    counts = reindex.scan_segment(
        config,
        sinks,
        job.table,
        targets=job.targets,
        segment=segment,
        total_segments=job.segments,
    )
    return FileCounts(counts.seen, counts.written, counts.already_newer, counts.rejected)


def _segment_item(segment: int) -> DataFile:
    """A scan segment as a work item of ``run_work_items`` (its key names it in the progress)."""
    return DataFile(f"segment-{segment}", 0, "")


def _load_segment_item(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: Mapping[str, Any],
    data_file: DataFile,
    page_size: int,
) -> FileCounts:
    segment = int(data_file.key.removeprefix("segment-"))
    return load_segment(config, sinks, ExportJob.from_json(job), segment)


def reindex_scan_in_workers(
    config: Config,
    sinks: Sinks,
    table_name: str,
    *,
    segments: int,
    workers: int,
    progress_path: Path | None = None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ExportReindexResult:
    """``syncer reindex --workers N`` without an export: the scan's segments as work items in a
    process pool, with the same prepare and finish as the state machine's."""
    check_work_options(workers, 1)
    if segments < 1:
        raise ConfigError(f"--segments must be at least 1, not {segments}")
    started = time.monotonic()
    progress_path = progress_path or default_progress_path(table_name)
    job = prepare_scan(config, sinks, table_name, segments, progress_path)
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
        page_size=1,
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


def _routed_shape(table: TableConfig, index: str) -> Callable[[ReadState], ReadState]:
    """A read of the table as ``index`` holds it: routed and transformed, else absent."""
    route = next(route for route in table.resolved_routes if route.index == index)

    def shape(read: ReadState) -> ReadState:
        return ReadState(document_in(route_item(table, read.item), route), read.version)

    return shape


# Consistent re-reads of items by document id, as the table holds them (planners route them):
# the scan reindex's own, so both paths settle unknown orders alike.
rereader = _rereader


def decode_lines(
    table: TableConfig,
    key_types: Mapping[str, str],
    summary: ExportSummary,
    page: Sequence[bytes],
    where: str,
) -> tuple[list[tuple[str, ExportLine, dict[str, Any] | None]], list[DeadLetter]]:
    """Each line's document id, parsed line and decoded item (None: deleted); bad ones as letters."""
    decoded = []
    letters = []
    for raw in page:
        try:
            line = parse_line(raw, summary, list(key_types), where)
            item = None if line.new_image is None else decode_item(line.new_image)
            # An image holds its key attributes: decode them once, with the item.
            doc_id = document_id(
                {name: item[name] for name in key_types}
                if item is not None
                else decode_item(line.keys)
            )
        except (PoisonRecordError, ExportFormatError) as error:
            letters.append(
                DeadLetter(
                    {"export_line": raw.decode("utf-8", "replace")[:4096]},
                    table.name,
                    type(error).__name__,
                    str(error),
                    None,
                )
            )
            continue
        decoded.append((doc_id, line, item))
    return decoded, letters


@dataclass(frozen=True)
class PreparedPage:
    """A page decoded and planned for, ready to write (made on the read-ahead thread)."""

    scanned: dict[DocumentRef, ReadState]
    route_tables: dict[DocumentRef, TableConfig]
    letters: list[DeadLetter]
    lines: int


def _prepare_export_page(
    table: TableConfig,
    targets: Mapping[str, str],
    key_types: Mapping[str, str],
    summary: ExportSummary,
    page: Sequence[bytes],
    where: str,
) -> PreparedPage:
    """Each exported item's state in the new index of its route (``targets``: alias -> index)."""
    decoded, letters = decode_lines(table, key_types, summary, page, where)
    scanned: dict[DocumentRef, ReadState] = {}
    route_tables: dict[DocumentRef, TableConfig] = {}
    for doc_id, line, item in decoded:
        state = route_item(table, item)
        if state.route is None or state.route.index not in targets:
            continue
        try:
            document = document_in(state, state.route)
        except PoisonRecordError as error:
            letters.append(
                DeadLetter(
                    {"export_document_id": doc_id},
                    table.name,
                    "PoisonRecordError",
                    str(error),
                    None,
                )
            )
            continue
        if document is not None:
            ref = (targets[state.route.index], doc_id)
            scanned[ref] = ReadState(document, line.version)
            route_tables[ref] = table.route_table(state.route)
    return PreparedPage(scanned, route_tables, letters, len(page))


def _write_export_page(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    targets: Mapping[str, str],
    key_types: Mapping[str, str],
    prepared: PreparedPage,
) -> FileCounts:
    """Create each prepared document in the new index; only conflicts are read and re-planned."""
    shapes = {new: _routed_shape(table, alias) for alias, new in targets.items()}
    scanned, route_tables = prepared.scanned, prepared.route_tables

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        again = None if reread is None else shapes[ref[0]](reread)
        return plan_scanned(ref, route_tables[ref], scanned[ref], target, again)

    result = apply_writes(
        sinks.opensearch,
        sinks.opensearch_guard,
        list(scanned),
        plan,
        config.opensearch,
        reread=rereader(sinks, table, key_types),
        read_first=False,  # a new, empty index: create, and read only what conflicts
    )
    return settle_page(sinks, table, result, list(prepared.letters), prepared.lines)


def settle_page(
    sinks: Sinks, table: TableConfig, result: ApplyResult, letters: list[DeadLetter], items: int
) -> FileCounts:
    """Dead-letter rejected documents; raise (the file is retried) when any write failed."""
    failed = [(ref, o) for ref, o in result.outcomes.items() if o.status is Settled.FAILED]
    if failed:
        raise DownstreamUnavailableError(
            f"export load of {table.name!r}: {len(failed)} document(s) could not be written "
            f"({failed[0][1].reason}); run the same command again to resume"
        )
    letters.extend(
        DeadLetter(
            {"export_document_id": ref[1]}, table.name, "DocumentRejectedError", o.reason, None
        )
        for ref, o in result.outcomes.items()
        if o.status is Settled.REJECTED
    )
    if letters:
        sinks.deadletter_guard.call_with_retry(sinks.deadletters.write, letters)
    written = result.count(Settled.WRITTEN) + result.count(Settled.TOMBSTONED)
    return FileCounts(items, written, result.count(Settled.SKIPPED), len(letters))


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, produced on another thread up to ``depth`` ahead of the consumer.

    A page is read from S3, decompressed and decoded while the previous one's ``_bulk`` is in
    flight (the socket wait releases the GIL), so one worker keeps both sides busy; memory
    grows by ``depth`` pages. An error of ``items`` is raised to the consumer in order; a
    consumer that stops early stops the producer.
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.05)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put((False, error))
        finally:
            close = getattr(items, "close", None)
            if callable(close):
                close()

    thread = threading.Thread(target=produce, name="export-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, value = queue.get()
            if more:
                yield value
            elif value is None:
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


def load_pages(
    reader: ExportReader,
    summary: ExportSummary,
    data_file: DataFile,
    prepare: Callable[[ExportSummary, Sequence[bytes], str], T],
    write: Callable[[T], FileCounts],
    page_size: int,
    on_page: Callable[[int], None] = lambda _: None,
    attempts: int = FILE_ATTEMPTS,
    backoff_s: float | None = None,
) -> FileCounts:
    """One data file: each page ``prepare``d (read ahead, on another thread), then ``write``n;
    the file is read again whole when it fails.

    Writes are idempotent (each replaces only an older state), so a file read again after a
    failure halfway writes nothing twice. After ``attempts`` the error names the file.
    """
    where = f"s3://{summary.bucket}/{data_file.key}"
    for attempt in range(1, attempts + 1):
        counts = FileCounts()
        try:
            pages = reader.read_pages(summary, data_file, page_size)
            prepared = read_ahead(prepare(summary, page, where) for page in pages)
            with ThreadPoolExecutor(WRITES_IN_FLIGHT, thread_name_prefix="export-write") as pool:
                in_flight: list[Future[FileCounts]] = []
                for page_work in prepared:
                    in_flight.append(pool.submit(write, page_work))
                    if len(in_flight) >= WRITES_IN_FLIGHT:
                        done = in_flight.pop(0).result()
                        counts = counts + done
                        on_page(done.items)
                for future in in_flight:
                    done = future.result()
                    counts = counts + done
                    on_page(done.items)
            return counts
        except (ExportFileError, DownstreamUnavailableError) as error:
            if attempt == attempts:
                raise ExportFileError(
                    f"{where} failed {attempts} times, last: {error}; the files loaded so far "
                    "are kept: run the same command again to resume"
                ) from error
            log.warning(
                "export file %s failed (attempt %d of %d): %s", where, attempt, attempts, error
            )
            time.sleep((FILE_RETRY_BACKOFF_S if backoff_s is None else backoff_s) * attempt)
    raise AssertionError("unreachable")


def load_file(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: ExportJob,
    data_file: DataFile,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_page: Callable[[int], None] = lambda _: None,
) -> FileCounts:
    """Step 2, one work item: a data file loaded into the new indices."""
    table = config.require_table(job.table)
    reader = ExportReader(s3, job.export_uri)
    summary = reader.summary()
    key_types = sinks.items.key_schema(table.name)

    def prepare(summary: ExportSummary, page: Sequence[bytes], where: str) -> PreparedPage:
        return _prepare_export_page(table, job.targets, key_types, summary, page, where)

    def write(prepared: PreparedPage) -> FileCounts:
        return _write_export_page(config, sinks, table, job.targets, key_types, prepared)

    return load_pages(reader, summary, data_file, prepare, write, page_size, on_page)


@dataclass(frozen=True)
class FinishCounts:
    carried: int
    absent_tombstoned: int


def _carry_planner(
    route_table: TableConfig,
    olds: Mapping[DocumentRef, Mapping[str, Any]],
    export_version: Version,
    shape: Callable[[ReadState], ReadState],
) -> Callable[[DocumentRef, TargetState, ReadState | None], DocumentWrite | Verdict]:
    """The new index's state of each of the old index's live documents (module docstring, 3)."""

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        if reread is not None:
            again = shape(reread)
            if again.item is None and target.document is None:
                # The old index holds it live, the table does not: absent reads leave a
                # tombstone, or an older change delivered again would bring it back.
                body = tombstone_body(route_table, again.version)
                return DocumentWrite(ref, WriteKind.TOMBSTONE, body, None)
            return plan_read_state(ref, route_table, again, target.document)
        source = olds[ref]
        old_version = version_from_meta(source.get(SYNCER_FIELD) or {})
        if target.document is not None:
            verdict = order_verdict(old_version, target.document)
            if verdict is not None:
                return verdict
            return DocumentWrite(ref, WriteKind.INDEX, source, target.document)
        # The export holds no such item: it was deleted before the export read it, unless the
        # old index learned it later than that read.
        order = compare(old_version, export_version)
        if order is Order.UNKNOWN:
            return Verdict.REREAD
        if order is Order.NEWER:
            return DocumentWrite(ref, WriteKind.INDEX, source, None)
        return DocumentWrite(
            ref, WriteKind.TOMBSTONE, tombstone_body(route_table, export_version), None
        )

    return plan


def _found(client: Any, guard: Any, index: str, ids: Sequence[str], source: bool) -> dict[str, Any]:
    """The documents of ``ids`` that ``index`` holds (realtime ``_mget``): id -> ``_source``."""
    if not ids:
        return {}
    response = guard.call_with_retry(
        client.mget,
        index=index,
        body={"ids": list(ids)},
        params={"_source": "true" if source else "false", "realtime": "true"},
    )
    return {doc["_id"]: doc.get("_source") for doc in response["docs"] if doc.get("found")}


def _primary_shards(client: Any, guard: Any, index: str) -> int:
    settings = guard.call_with_retry(client.indices.get_settings, index=index)
    return max(1, int(next(iter(settings.values()))["settings"]["index"]["number_of_shards"]))


def carry_live_documents(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    alias: str,
    old_index: str,
    new_index: str,
    export_version: Version,
    key_types: Mapping[str, str],
    page_size: int = 5000,
    slices: int | None = None,
) -> FinishCounts:
    """Every live document of the old index, ordered against the new index's state.

    Most of them are older than the export and already in the new index: for those, only
    ``_syncer`` is scrolled and their presence in the new index asked (``_mget`` without
    sources). Only the documents newer than the export (or not ordered against it) and those
    the new index lacks are read whole and written through ``apply_writes``. The scroll is
    sliced, one slice per primary shard (``slices``), each on its own thread.
    """
    route = next(route for route in table.resolved_routes if route.index == alias)
    route_table = table.route_table(route)
    client, guard = sinks.opensearch, sinks.opensearch_guard
    guard.call_with_retry(client.indices.refresh, index=old_index)
    slices = slices or _primary_shards(client, guard, old_index)
    planner_shape = _routed_shape(table, alias)

    def carry_page(hits: Sequence[Mapping[str, Any]]) -> FinishCounts:
        older, candidates = [], []
        for hit in hits:
            version = version_from_meta(hit["_source"].get(SYNCER_FIELD) or {})
            if compare(version, export_version) is Order.OLDER:
                older.append(hit["_id"])
            else:
                candidates.append(hit["_id"])
        present = _found(client, guard, new_index, older, source=False)
        candidates += [doc_id for doc_id in older if doc_id not in present]
        sources = _found(client, guard, old_index, candidates, source=True)
        olds = {(new_index, doc_id): source for doc_id, source in sources.items()}
        if not olds:
            return FinishCounts(0, 0)
        result = apply_writes(
            client,
            guard,
            list(olds),
            _carry_planner(route_table, olds, export_version, planner_shape),
            config.opensearch,
            reread=rereader(sinks, table, key_types),
        )
        settle_page(sinks, table, result, [], len(olds))
        return FinishCounts(result.count(Settled.WRITTEN), result.count(Settled.TOMBSTONED))

    def carry_slice(number: int) -> FinishCounts:
        body: dict[str, Any] = {"query": LIVE_DOCUMENTS_FILTER, "_source": [SYNCER_FIELD]}
        if slices > 1:
            body["slice"] = {"id": number, "max": slices}
        totals = FinishCounts(0, 0)
        for hits in scroll_pages(client, guard, old_index, body, page_size):
            counts = carry_page(hits)
            totals = FinishCounts(
                totals.carried + counts.carried,
                totals.absent_tombstoned + counts.absent_tombstoned,
            )
        return totals

    with ThreadPoolExecutor(slices, thread_name_prefix="export-finish") as pool:
        results = list(pool.map(carry_slice, range(slices)))
    return FinishCounts(sum(r.carried for r in results), sum(r.absent_tombstoned for r in results))


def finish_export(config: Config, sinks: Sinks, job: ExportJob) -> FinishCounts:
    """Step 3, once every file is loaded: the old indices' live documents carried, then the swap."""
    table = config.require_table(job.table)
    key_types = sinks.items.key_schema(table.name)
    export_version = version_from_meta(job.read_version)
    if job.export_uri and not export_version.is_read:
        raise ExportFormatError("the job carries no export version: run its prepare step again")
    totals = FinishCounts(0, 0)
    for alias, new_index in job.targets.items():
        old_index = job.old_indices.get(alias)
        if old_index and job.export_uri:  # a scan leaves absent reads' tombstones itself
            counts = carry_live_documents(
                config, sinks, table, alias, old_index, new_index, export_version, key_types
            )
            totals = FinishCounts(
                totals.carried + counts.carried, totals.absent_tombstoned + counts.absent_tombstoned
            )
    client = Guarded(sinks.opensearch, sinks.opensearch_guard)
    for alias, new_index in job.targets.items():
        route = next(route for route in table.resolved_routes if route.index == alias)
        view, shape = table.route_table(route), _routed_shape(table, alias)
        old_index = job.old_indices.get(alias)
        if old_index and not job.export_uri:  # a scan's absent reads (the export's: above)
            absent = reindex.tombstone_absent(
                sinks, config, view, old_index, new_index, key_types, shape=shape
            )
            totals = FinishCounts(totals.carried, totals.absent_tombstoned + absent)
        # The swap blocks writes on the old index first; the catch-up then brings what a
        # batch wrote there but not here (docs/ordering.md, "The swap").
        reindex.swap_alias(client, view, new_index, old_index)
        if old_index:
            reindex.catch_up(
                sinks, config, view, old_index, new_index, key_types, job.started_at, shape=shape
            )
    return totals


# --- the local runner: the same steps over the same work items, inline or in a process pool

_worker_sinks: tuple[Config, Sinks, Any] | None = None


def _init_worker(config: Config) -> None:
    """A pool process's own clients (none crosses a process boundary)."""
    global _worker_sinks
    from syncer.sinks.build import build_sinks

    _worker_sinks = (config, build_sinks(config), s3_client())


WorkItem = Callable[[Config, Sinks, Any, Mapping[str, Any], DataFile, int], FileCounts]


def _run_in_worker(
    work: WorkItem, job: Mapping[str, Any], data_file: DataFile, page_size: int
) -> FileCounts:
    if _worker_sinks is None:
        raise AssertionError("worker process without clients")
    config, sinks, s3 = _worker_sinks
    return work(config, sinks, s3, job, data_file, page_size)


def _load_export_file(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: Mapping[str, Any],
    data_file: DataFile,
    page_size: int,
) -> FileCounts:
    return load_file(config, sinks, s3, ExportJob.from_json(job), data_file, page_size)


def run_work_items(
    config: Config,
    sinks: Sinks,
    s3: Any,
    work: WorkItem,
    job: Mapping[str, Any],
    files: Iterable[DataFile],
    progress: FileProgress,
    progress_path: Path,
    *,
    workers: int,
    page_size: int,
    on_progress: Callable[[int], None],
) -> FileCounts:
    """Every file not done yet, through ``work``; each file's counts saved once it is loaded.

    One worker runs in this process (progress per page); more run in a pool of processes
    (progress per file). The first file that fails for good stops the run; the others in
    flight finish and are saved, so a rerun resumes with what is left.
    """
    pending = [data_file for data_file in files if data_file.key not in progress.done]
    totals = FileCounts()

    def done(data_file: DataFile, counts: FileCounts) -> None:
        nonlocal totals
        totals = totals + counts
        progress.done[data_file.key] = asdict(counts)
        save_progress(progress, progress_path)

    if workers <= 1:
        for data_file in pending:
            done(data_file, work(config, sinks, s3, job, data_file, page_size))
            on_progress(0)
        return totals
    failure: BaseException | None = None
    context = multiprocessing.get_context("spawn")  # no parent's threads or sockets in a child
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(config,)
    ) as pool:
        running: dict[Future[FileCounts], DataFile] = {}
        queue = list(reversed(pending))
        while queue or running:
            while queue and len(running) < workers and failure is None:
                data_file = queue.pop()
                running[pool.submit(_run_in_worker, work, job, data_file, page_size)] = data_file
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                data_file = running.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                counts = future.result()
                done(data_file, counts)
                on_progress(counts.items)
    if failure is not None:
        raise failure
    return totals


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
) -> ExportReindexResult:
    """``syncer reindex --export``: prepare, every file loaded, then finish (module docstring)."""
    check_work_options(workers, page_size)
    started = time.monotonic()
    s3 = s3 if s3 is not None else s3_client()
    progress_path = progress_path or default_progress_path(table_name)
    job, files = prepare_export(config, sinks, s3, table_name, export_uri, progress_path)
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


def check_work_options(workers: int, page_size: int) -> None:
    """Refuse bad options before anything is created."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if page_size < 1:
        raise ConfigError(f"--page-size must be at least 1, not {page_size}")
