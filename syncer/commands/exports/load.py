"""Step 2, a work item: one export data file (``load_file``), checked whole first
(``sinks.exports``), then streamed, decoded and written into the new indices page by page, read
ahead on another thread and read again whole when it fails; or one scan segment
(``load_segment``). A line that cannot be indexed never leaves its item looking absent
(``unloaded``), and a file read again skips the states it wrote itself."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Full, Queue
from typing import Any, TypeVar

from syncer.commands import reindex
from syncer.commands.exports.job import ExportJob, FileCounts
from syncer.commands.exports.ownwrites import OwnWrites
from syncer.commands.exports.unloaded import settle_unloaded
from syncer.commands.reindex.writes import rereader, route_named, routed_read
from syncer.config import Config, TableConfig
from syncer.core.attributes import decode_item
from syncer.core.command_planners import ScanPlanner
from syncer.core.documents import (
    Decision,
    DocumentRef,
    IndexedDocument,
    ReadState,
    Settled,
    TargetState,
)
from syncer.core.exports import (
    DataFile,
    ExportFormatError,
    ExportLine,
    ExportSummary,
    holds_this_state,
    parse_line,
)
from syncer.core.records import document_id
from syncer.core.rounds import write_documents
from syncer.core.routes import document_in, route_item
from syncer.errors import DownstreamUnavailableError, PoisonRecordError, SyncerError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.exports import ExportFileError, ExportReader
from syncer.sinks.ports import Sinks
from syncer.sinks.search import ApplyResult, WriteOptions

log = logging.getLogger("syncer.commands.exports")
T = TypeVar("T")
DEFAULT_PAGE_SIZE = 1000
FILE_ATTEMPTS = 3
# Pages of one file written at once: one page's documents are serialized while another's
# _bulk is in flight. Pages hold different items, so their order does not matter.
WRITES_IN_FLIGHT = 2
FILE_RETRY_BACKOFF_S = 1.0


def load_segment(
    config: Config,
    sinks: Sinks,
    job: ExportJob,
    segment: int,
    page_size: int = reindex.DEFAULT_PAGE_SIZE,
) -> FileCounts:
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
        page_size=page_size,
    )
    return FileCounts(counts.seen, counts.written, counts.already_newer, counts.rejected)


@dataclass(frozen=True)
class DecodedPage:
    """A page's lines decoded: (document id, line, item or None when deleted) for each good one;
    a dead letter for each bad one, with the ids of those whose key could still be read."""

    decoded: list[tuple[str, ExportLine, dict[str, Any] | None]]
    letters: list[DeadLetter]
    undecoded_ids: list[str]  # bad lines whose item key is known: never treat them as absent
    unkeyed: list[str]  # where each bad line without a readable key is


def decode_page(
    table: TableConfig,
    key_types: Mapping[str, str],
    summary: ExportSummary,
    page: Sequence[bytes],
    where: str,
) -> DecodedPage:
    """Each line's document id, parsed line and decoded item (None: deleted); bad ones as letters."""
    decoded = []
    letters = []
    undecoded: list[str] = []
    unkeyed: list[str] = []

    def letter(raw: bytes, error: SyncerError) -> None:
        letters.append(
            DeadLetter(
                {"export_line": raw.decode("utf-8", "replace")[:4096]},
                table.name,
                type(error).__name__,
                str(error),
                None,
            )
        )

    for number, raw in enumerate(page):
        item: dict[str, Any] | None = None
        failed: PoisonRecordError | None = None
        try:
            line = parse_line(raw, summary, list(key_types), where)
            try:
                item = None if line.new_image is None else decode_item(line.new_image)
            except PoisonRecordError as error:
                failed = error
            # An image holds its key attributes: decode them once, with the item.
            keys = decode_item(line.keys) if item is None else {n: item[n] for n in key_types}
            doc_id = document_id(keys)
        except (PoisonRecordError, ExportFormatError) as error:
            letter(raw, error)
            unkeyed.append(f"{where}, line {number + 1} of its page: {error}")
            continue
        if failed is not None:
            letter(raw, failed)
            undecoded.append(doc_id)
            continue
        decoded.append((doc_id, line, item))
    return DecodedPage(decoded, letters, undecoded, unkeyed)


def decode_lines(
    table: TableConfig,
    key_types: Mapping[str, str],
    summary: ExportSummary,
    page: Sequence[bytes],
    where: str,
) -> tuple[list[tuple[str, ExportLine, dict[str, Any] | None]], list[DeadLetter]]:
    """``decode_page``'s good lines and dead letters."""
    decoded = decode_page(table, key_types, summary, page, where)
    return decoded.decoded, decoded.letters


@dataclass(frozen=True)
class PreparedPage:
    """A page decoded and planned for, ready to write (made on the read-ahead thread)."""

    scanned: dict[DocumentRef, ReadState]
    route_tables: dict[DocumentRef, TableConfig]
    letters: list[DeadLetter]
    lines: int
    undecoded_ids: list[str] = field(default_factory=list)  # lines that could not be indexed


def _prepare_export_page(
    table: TableConfig,
    targets: Mapping[str, str],
    key_types: Mapping[str, str],
    summary: ExportSummary,
    page: Sequence[bytes],
    where: str,
) -> PreparedPage:
    """Each exported item's state in the new index of its route (``targets``: alias -> index).

    A line without a key syncer can read stops the load: its item would be taken as absent
    from the export and tombstoned (``unloaded``); a scan reindex reads the table instead.
    """
    page_lines = decode_page(table, key_types, summary, page, where)
    if page_lines.unkeyed:
        raise ExportFormatError(
            f"{page_lines.unkeyed[0]}: a line whose item key cannot be read would leave that "
            "item tombstoned as absent from the export, so nothing of this export is swapped "
            "in; rebuild with a scan instead (syncer reindex without --export)"
        )
    letters, undecoded = page_lines.letters, page_lines.undecoded_ids
    scanned: dict[DocumentRef, ReadState] = {}
    route_tables: dict[DocumentRef, TableConfig] = {}
    for doc_id, line, item in page_lines.decoded:
        state = route_item(table, item)
        if state.route is None or state.route.index not in targets:
            continue
        try:
            document = document_in(state, state.route)
        except PoisonRecordError as error:
            letters.append(poison_letter(table.name, doc_id, error))
            undecoded.append(doc_id)
            continue
        if document is not None:
            ref = (targets[state.route.index], doc_id)
            scanned[ref] = ReadState(document, line.version)
            route_tables[ref] = table.route_table(state.route)
    return PreparedPage(scanned, route_tables, letters, len(page), undecoded)


def _write_export_page(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    job: ExportJob,
    key_types: Mapping[str, str],
    prepared: PreparedPage,
    where: str = "",
) -> FileCounts:
    """Create each prepared document in the new index; only conflicts are read and re-planned.

    A conflict with the very state this page writes (a retried file meeting its own write)
    is skipped without reading the table (``ownwrites``). The items of lines that
    could not be indexed are settled so that ``finish`` never takes them as absent.
    """
    targets = job.targets
    shapes = {new: routed_read(table, route_named(table, alias)) for alias, new in targets.items()}
    scanned, route_tables = prepared.scanned, prepared.route_tables
    own = OwnWrites(sinks, rereader(sinks, table, key_types))
    planner = ScanPlanner(scanned, route_tables, shapes)

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is None:  # a state the index may hold already: checked whole on a re-read
            own.note(ref, target, scanned[ref].version, _holds(scanned[ref], route_tables[ref]))
        return planner(ref, target, reread)

    result = write_documents(
        sinks.search,
        list(scanned),
        plan,
        # a new, empty index: create, and read only what conflicts; through the reindex alias
        WriteOptions(reread=own.reread, read_first=False, require_alias=True),
    )
    unloaded = [*prepared.undecoded_ids, *_rejected_ids(result)]
    if unloaded:
        settle_unloaded(sinks, table, targets, job.old_indices, key_types, unloaded, where)
    return settle_page(sinks, table, result, list(prepared.letters), prepared.lines)


def _holds(state: ReadState, view: TableConfig) -> Callable[[IndexedDocument], bool]:
    """Whether a document read whole is ``state`` as ``view``'s index holds it."""
    return lambda indexed: holds_this_state(indexed, state.version, state.item, view)


def _rejected_ids(result: ApplyResult) -> list[str]:
    return [ref[1] for ref, o in result.outcomes.items() if o.status is Settled.REJECTED]


def poison_letter(table: str, doc_id: str, error: PoisonRecordError) -> DeadLetter:
    """The dead letter of an export line that cannot be indexed (a transform failed, ...)."""
    return DeadLetter({"export_document_id": doc_id}, table, "PoisonRecordError", str(error), None)


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
        sinks.letters.write(letters)
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
    where = f"s3://{summary.bucket}/{data_file.key}"

    def prepare(summary: ExportSummary, page: Sequence[bytes], where: str) -> PreparedPage:
        return _prepare_export_page(table, job.targets, key_types, summary, page, where)

    def write(prepared: PreparedPage) -> FileCounts:
        return _write_export_page(config, sinks, table, job, key_types, prepared, where)

    return load_pages(reader, summary, data_file, prepare, write, page_size, on_page)
