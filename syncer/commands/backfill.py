"""Apply a full or incremental DynamoDB export to the live index in place (``syncer backfill``).

For a window the stream no longer holds (the trigger was off longer than its 24 hours), or a
table loaded into an index that already serves. Each data file is a work item, as in
``reindex --export`` (``syncer.commands.exports``): streamed, checked, retried, its progress
recorded in the table's backfill job (``syncer.core.jobs``), so a rerun anywhere resumes.

- A full export's item is a read over ``exportTime`` plus or minus a minute; an incremental
  line's version is its ``WriteTimestampMicros`` (``syncer.core.exports``). A line without
  ``NewImage`` is a delete: a tombstone, so an older change delivered later cannot bring it back.
- Every write goes through ``apply_writes`` against the live alias (and the reindex alias while
  a reindex runs, as the stream does): it never replaces a newer state, and a state whose order
  is unknown is read again from the table.
- The cache keys of every item it changed (of its image in the export, its old image and the
  document it replaced) are invalidated after the write, before the file counts as loaded.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer.commands.exports import (
    DEFAULT_PAGE_SIZE,
    FileCounts,
    OwnWrites,
    WorkItem,
    check_work_options,
    decode_lines,
    load_pages,
    loaded,
    poison_letter,
    read_checked_export,
    rereader,
    run_work_items,
    s3_client,
    settle_page,
)
from syncer.commands.jobs import job_store, start_backfill_job
from syncer.config import Config, Route, TableConfig
from syncer.config.templates import fill_template
from syncer.core.attributes import decode_item
from syncer.core.command_planners import BackfillPlanner, BackfillState, plan_backfill
from syncer.core.documents import (
    Decision,
    DocumentRef,
    IndexedDocument,
    ReadState,
    Settled,
    TargetState,
)
from syncer.core.exports import DataFile, ExportSummary, holds_this_state
from syncer.core.jobs import LOAD, Advance, Progressed
from syncer.core.rounds import write_documents
from syncer.core.routes import document_in, route_item
from syncer.errors import PoisonRecordError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.exports import ExportReader
from syncer.sinks.ports import Sinks
from syncer.sinks.search import WriteOptions, reindex_alias


@dataclass(frozen=True)
class BackfillResult:
    export_type: str
    files: int
    files_resumed: int
    counts: FileCounts
    seconds: float


__all__ = [  # plan_backfill: pure, in syncer.core.command_planners; imported from here too
    "BackfillResult",
    "backfill",
    "plan_backfill",
    "prepare_backfill_page",
    "write_backfill_page",
]


def _cache_keys(
    route: Route, keys: Mapping[str, Any], states: Sequence[Mapping[str, Any]]
) -> set[str]:
    templates = route.templates
    found = set()
    for state in states:
        for parsed in templates:
            rendered = fill_template(parsed, keys, state)
            if rendered is not None:
                found.add(rendered)
    return found


@dataclass(frozen=True)
class _PreparedLines:
    """A page's lines as the state each route's index should hold (made on the read-ahead thread)."""

    states: dict[DocumentRef, BackfillState]
    optional: frozenset[str]
    letters: list[DeadLetter]
    lines: int


def prepare_backfill_page(
    table: TableConfig,
    key_types: Mapping[str, str],
    summary: ExportSummary,
    page: Sequence[bytes],
    where: str,
) -> _PreparedLines:
    """Each line's state in every route's live index, and in a running reindex's index."""
    decoded, letters = decode_lines(table, key_types, summary, page, where)
    states: dict[DocumentRef, BackfillState] = {}
    optional: set[str] = set()
    for doc_id, line, item in decoded:
        routed = route_item(table, item)
        images = tuple(
            decode_item(image) for image in (line.new_image, line.old_image) if image is not None
        )
        for route in table.resolved_routes:
            try:
                document = document_in(routed, route)
            except PoisonRecordError as error:
                letters.append(poison_letter(table.name, doc_id, error))
                continue
            state = BackfillState(route, document, item is None, line, images)
            states[(route.index, doc_id)] = state
            states[(reindex_alias(route.index), doc_id)] = state
            optional.add(reindex_alias(route.index))
    return _PreparedLines(states, frozenset(optional), letters, len(page))


def write_backfill_page(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    key_types: Mapping[str, str],
    prepared: _PreparedLines,
) -> FileCounts:
    """Each prepared state written where it is newer; the cache keys of what changed cleared."""
    states, letters = prepared.states, list(prepared.letters)
    route_tables = {
        alias: table.route_table(route)
        for route in table.resolved_routes
        for alias in (route.index, reindex_alias(route.index))
    }

    own = OwnWrites(sinks, rereader(sinks, table, key_types))
    planner = BackfillPlanner(table, states)  # its ``held``: refs holding this state or newer

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Decision:
        if reread is None:  # a state the index may hold already: checked whole on a re-read
            state = states[ref]
            own.note(ref, target, state.line.version, _holds(state, route_tables[ref[0]]))
        return planner(ref, target, reread)

    options = WriteOptions(
        reread=own.reread, optional_aliases=prepared.optional, fields=_cache_fields(table)
    )
    result = write_documents(sinks.search, list(states), plan, options)
    keys: set[str] = set()
    for ref, outcome in result.outcomes.items():
        if outcome.status not in (Settled.WRITTEN, Settled.TOMBSTONED):
            continue
        state = states[ref]
        before = result.observed.get(ref)
        seen = [*state.images, *([before.fields] if before is not None else [])]
        keys |= _cache_keys(state.route, decode_item(state.line.keys), seen or [{}])
    if keys:
        sinks.cache.invalidate(keys)
    counts = settle_page(sinks, table, result, letters, prepared.lines)
    # Skipped refs of an absent reindex alias, or of a route the item is not in, held nothing.
    newer = sum(1 for ref in planner.held if result.status(ref) is Settled.SKIPPED)
    return dataclasses.replace(counts, already_newer=newer)


def _holds(state: BackfillState, view: TableConfig) -> Callable[[IndexedDocument], bool]:
    """Whether a document read whole is the line's state as ``view``'s index holds it."""
    return lambda indexed: holds_this_state(indexed, state.line.version, state.document, view)


def _cache_fields(table: TableConfig) -> tuple[str, ...]:
    """The indexed fields cache key templates name (read with ``_syncer`` by the ``_mget``)."""
    from syncer.config.templates import template_fields

    names: set[str] = set()
    for route in table.resolved_routes:
        for template in route.cache_keys + route.search_cache_keys:
            names |= template_fields(template)
    return tuple(sorted(names))


def _backfill_file(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: Mapping[str, Any],
    data_file: DataFile,
    page_size: int,
    on_page: Callable[[int], None] = lambda _: None,
) -> FileCounts:
    """One work item: a data file applied to the live index."""
    table = config.require_table(str(job["table"]))
    reader = ExportReader(s3, str(job["export_uri"]))
    summary = reader.summary()
    key_types = sinks.items.key_schema(table.name)

    def prepare(summary: ExportSummary, page: Sequence[bytes], where: str) -> _PreparedLines:
        return prepare_backfill_page(table, key_types, summary, page, where)

    def write(prepared: _PreparedLines) -> FileCounts:
        return write_backfill_page(config, sinks, table, key_types, prepared)

    return load_pages(reader, summary, data_file, prepare, write, page_size, on_page)


def backfill(
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
) -> BackfillResult:
    """``syncer backfill``: every data file of the export applied in place (module docstring)."""
    check_work_options(workers, page_size)
    started = time.monotonic()
    table = config.require_table(table_name)
    s3 = s3 if s3 is not None else s3_client()
    _, summary, files = read_checked_export(sinks, s3, table, export_uri)
    if progress_path is not None:
        warnings.warn(
            "progress_path is ignored: a backfill's progress lives in its job record "
            "(syncer reindex --status); drop the argument",
            DeprecationWarning,
            stacklevel=2,
        )
    # the job record (in OpenSearch) keeps each file's progress: a rerun anywhere resumes
    items = tuple(data_file.key for data_file in files)
    handle, _ = start_backfill_job(job_store(sinks), table.name, export_uri, items)
    done = {key for key, progress in handle.job.progress.items() if progress.done}
    resumed = len(done)
    job = {"table": table.name, "export_uri": export_uri}

    def inline(
        config: Config,
        sinks: Sinks,
        s3: Any,
        job: Mapping[str, Any],
        data_file: DataFile,
        page_size: int,
    ) -> FileCounts:
        return _backfill_file(config, sinks, s3, job, data_file, page_size, on_progress)

    work: WorkItem = inline if workers <= 1 else _backfill_file

    def record(data_file: DataFile, counts: FileCounts) -> None:
        handle.apply(Progressed(data_file.key, loaded(counts)))

    with handle.holding():
        counts = run_work_items(
            config,
            sinks,
            s3,
            work,
            job,
            files,
            done,
            record,
            workers=workers,
            page_size=page_size,
            on_progress=on_progress if workers > 1 else (lambda _: None),
        )
        handle.apply(Advance(LOAD))
    return BackfillResult(
        summary.export_type, len(files), resumed, counts, time.monotonic() - started
    )
