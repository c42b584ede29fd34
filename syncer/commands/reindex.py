"""Rebuild a table's indices from a parallel DynamoDB scan, with no downtime (``syncer reindex``).

One path for every table: a plain table is one catch-all route (``TableConfig.resolved_routes``),
so a reindex rebuilds each selected route's index from the same scan, with one state file.

1. Check the arguments (``ReindexOptions``), then create each route's next versioned index
   (``catalog-000002``) and point ``catalog-reindexing`` at it. From then on every batch writes
   stream changes to it too (``syncer.sinks.search.reindex_alias``).
2. Carry the old index's tombstones younger than the replay horizon into the new index, so a
   change delivered again after the swap cannot bring a deleted item back.
3. Scan the table in segments (``scan_segment``: one work item, idempotent, resumable from its
   last key), page by page, and write each item's document with its read version through
   ``syncer.sinks.search.apply_writes``: it replaces only older states, and the stream's newer
   changes replace it (docs/ordering.md).
4. Tombstone what the scan read as absent (``tombstone_absent``): a document live in the old
   index and absent from the new one gets the state a consistent read finds now, a tombstone
   with that read's version when the item is gone, so its older changes stay refused.
5. Swap (``swap_alias``): block writes on the old index, then point the alias at the new one and
   drop the reindex alias in one ``POST _aliases``. A batch that resolved the old index before
   the swap gets a 403 and re-resolves the alias on its retry (docs/ordering.md, "The swap").
6. Catch up (``catch_up``): the old index, frozen by the block, may hold changes a batch wrote
   there but not to the new index (a 409 or 429 there, then no reindex alias on its retry):
   each document changed since the reindex began that is newer there is read again and written.

Progress is saved after every page in a state file, so a crashed reindex resumes where it was;
``abandon`` drops a reindex that should not finish.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syncer.config import Config, Route, TableConfig
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
from syncer.core.keys import boto_key, lambda_key, typed_key_from_id
from syncer.core.plan import order_verdict, plan_read_state, plan_scanned, tombstone_body
from syncer.core.records import document_id
from syncer.core.routes import document_in, route_item
from syncer.core.versions import CLOCK_UNCERTAINTY_MS, Version, version_from_meta
from syncer.errors import ConfigError, DownstreamUnavailableError, PoisonRecordError, SyncerError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER, create_versioned_index, versioned_index_name
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Guarded
from syncer.sinks.search import ApplyResult, Planner, apply_writes, reindex_alias, scroll_pages

log = logging.getLogger(__name__)
DEFAULT_PAGE_SIZE = 500
MAX_SEGMENTS = 1_000_000  # DynamoDB's limit on a Scan's TotalSegments
MAX_SEGMENT_THREADS = 64  # segments scanned at once by one process; the rest wait their turn
# Tombstones younger than this are carried into a new index: the stream's 24 hours plus the 14
# days the deployed dead-letter queue keeps messages (the purge-tombstones default, too).
TOMBSTONE_HORIZON_S = 15 * 86_400
WRITE_BLOCK = "index.blocks.write"


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
    state_path: Path | None = None  # default: .syncer-reindex-TABLE.json
    index: str | None = None  # rebuild only this route's index (default: every index)
    delete_old: bool = False
    delete_grace_s: float = 0.0
    on_progress: Callable[[SegmentProgress], None] = _ignore
    on_resume: Callable[[int], None] = lambda _: None  # items scanned before a crash, once

    def __post_init__(self) -> None:
        check_scan_arguments(self.segments, self.page_size)
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


@dataclass
class IndexRebuild:
    """One route's rebuild: its alias, the index being filled and the one it replaces."""

    alias: str
    new_index: str
    old_index: str | None
    tombstones_carried: int | None = None  # None until the old index's tombstones were copied
    absent_tombstoned: int | None = None  # None until what the scan found absent was settled
    caught_up: int | None = None  # None until what the old index learned was brought over


@dataclass
class ReindexState:
    """What survives a crash: the indices being built and how far each scan segment got."""

    table: str
    segments: int
    rebuilds: list[IndexRebuild]
    last_keys: dict[str, Any] = field(default_factory=dict)  # segment -> LastEvaluatedKey
    done_segments: list[int] = field(default_factory=list)
    seen: int = 0
    indexed: int = 0
    rejected: int = 0
    started_at: float = field(default_factory=time.time)
    swapping: bool = False  # the old indices may carry a write block from here on

    @property
    def targets(self) -> dict[str, str]:
        """Route alias -> the new index the scan fills for it."""
        return {rebuild.alias: rebuild.new_index for rebuild in self.rebuilds}


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


def default_state_path(table: str) -> Path:
    return Path(f".syncer-reindex-{table}.json")


def save_state(state: ReindexState, path: Path) -> None:
    """Write the state atomically: a temp file, fsync, then rename over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(jsoncodec.dumps(asdict(state)))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def load_state(path: Path) -> ReindexState | None:
    """The saved state; a file of an earlier release (one index per file) reads as one rebuild."""
    if not path.exists():
        return None
    raw = dict(jsoncodec.loads(path.read_bytes()))
    if "new_index" in raw:  # before routes shared one state file
        new_index = raw.pop("new_index")
        alias = new_index.rsplit("-", 1)[0]  # versioned_index_name: ALIAS-NNNNNN
        carried = raw.pop("tombstones_carried", None)
        raw["rebuilds"] = [asdict(IndexRebuild(alias, new_index, raw.pop("old_index"), carried))]
    raw["rebuilds"] = [IndexRebuild(**rebuild) for rebuild in raw["rebuilds"]]
    return ReindexState(**raw)


def _generation(index: str, alias: str) -> int:
    suffix = index[len(alias) + 1 :]
    return int(suffix) if index.startswith(f"{alias}-") and suffix.isdigit() else 0


def _alias_indices(client: Any, alias: str) -> list[str]:
    from opensearchpy.exceptions import NotFoundError

    try:
        return sorted(client.indices.get_alias(name=alias))
    except NotFoundError:
        return []


def selected_routes(table: TableConfig, index: str | None = None) -> list[Route]:
    """The routes a reindex rebuilds: every one of the table's, or the one writing ``index``."""
    routes = [route for route in table.resolved_routes if index in (None, route.index)]
    if not routes:
        indices = ", ".join(route.index for route in table.resolved_routes)
        raise ConfigError(f"table {table.name!r} has no index {index!r} (its indices: {indices})")
    return routes


def _in_progress(client: Any, state: ReindexState, rebuild: IndexRebuild) -> bool:
    """Whether ``rebuild`` is still the reindex its alias serves (or already swapped to)."""
    if _alias_indices(client, reindex_alias(rebuild.alias)) == [rebuild.new_index]:
        return True
    return state.swapping and _alias_indices(client, rebuild.alias) == [rebuild.new_index]


def prepare(
    client: Any, table: TableConfig, segments: int, state_path: Path, *, index: str | None = None
) -> ReindexState:
    """Resume the reindex in ``state_path``, or create each route's next index and reindex alias.

    A state saved with segments < 1 (by a release that did not check them) scanned nothing:
    it resumes with ``segments``.
    """
    check_scan_arguments(segments, DEFAULT_PAGE_SIZE)
    routes = selected_routes(table, index)
    aliases = sorted(route.index for route in routes)
    state = load_state(state_path)
    if (
        state is not None
        and state.table == table.name
        and sorted(state.targets) == aliases
        and all(_in_progress(client, state, rebuild) for rebuild in state.rebuilds)
    ):
        log.info("resuming reindex of %s into %s", table.name, sorted(state.targets.values()))
        if state.segments < 1:
            log.warning(
                "the saved reindex of %s has segments=%d; scanning with %d segments",
                table.name,
                state.segments,
                segments,
            )
            state.segments, state.last_keys, state.done_segments = segments, {}, []
            save_state(state, state_path)
        return state
    for alias in aliases:
        running = _alias_indices(client, reindex_alias(alias))
        if running:
            raise SyncerError(
                f"a reindex of {table.name!r} into {running} is in progress but {state_path} "
                f"does not describe it; pass its --state-file, or run `syncer reindex --table "
                f"{table.name} --abandon` to drop it"
            )
    rebuilds = [_create_next_index(client, table.route_table(route)) for route in routes]
    state = ReindexState(table.name, segments, rebuilds)
    save_state(state, state_path)
    return state


def _create_next_index(client: Any, table: TableConfig) -> IndexRebuild:
    current = _alias_indices(client, table.index)
    if len(current) > 1:
        raise ConfigError(f"alias {table.index!r} points at several indices: {current}")
    old_index = current[0] if current else None
    existing = client.indices.get(index=f"{table.index}-0*", params={"ignore_unavailable": "true"})
    generation = max([_generation(name, table.index) for name in existing] + [0]) + 1
    new_index = versioned_index_name(table.index, generation)
    create_versioned_index(client, table, new_index, with_alias=False)
    client.indices.put_alias(index=new_index, name=reindex_alias(table.index))
    log.info("reindexing %s into %s (old: %s)", table.name, new_index, old_index)
    return IndexRebuild(table.index, new_index, old_index)


def _routed_read(table: TableConfig, route: Route) -> Callable[[ReadState], ReadState]:
    """A read of the table as ``route``'s index holds it: routed, transformed, else absent."""

    def shape(read: ReadState) -> ReadState:
        return ReadState(document_in(route_item(table, read.item), route), read.version)

    return shape


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
    routes: dict[DocumentRef, Route] = {}
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
            routes[ref] = state.route

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        route = routes[ref]
        again = None if reread is None else _routed_read(table, route)(reread)
        return plan_scanned(ref, table.route_table(route), scanned[ref], target, again)

    result = apply_writes(
        sinks.opensearch,
        sinks.opensearch_guard,
        list(scanned),
        plan,
        config.opensearch,
        reread=_rereader(sinks, table, key_types),
        read_first=False,  # a new index: create first, read only what conflicts
    )
    letters.extend(
        _rejected(table, ref, o.reason) for ref, o in _outcomes(result, Settled.REJECTED)
    )
    _raise_failed(result, table)
    if letters:
        sinks.deadletter_guard.call_with_retry(sinks.deadletters.write, letters)
    written = result.count(Settled.WRITTEN) + result.count(Settled.TOMBSTONED)
    return SegmentCounts(len(raw_items), written, result.count(Settled.SKIPPED), len(letters))


def _outcomes(result: ApplyResult, status: Settled) -> list[tuple[DocumentRef, Any]]:
    return [(ref, o) for ref, o in result.outcomes.items() if o.status is status]


def _raise_failed(result: ApplyResult, table: TableConfig) -> None:
    """A reindex never skips a document: stop (resumable) when any write failed."""
    failed = _outcomes(result, Settled.FAILED)
    if failed:
        raise DownstreamUnavailableError(
            f"reindex of {table.name!r}: {len(failed)} document(s) could not be written "
            f"({failed[0][1].reason}); run the same command again to resume"
        )


def _rereader(
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


def _tombstone_planner(
    table: TableConfig,
    metas: Mapping[DocumentRef, Mapping[str, Any]],
    shape: Callable[[ReadState], ReadState] = lambda read: read,
) -> Callable[[DocumentRef, TargetState, ReadState | None], DocumentWrite | Verdict]:
    """Plan each carried tombstone like any state: written only over an older one."""

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        if reread is not None:
            return plan_read_state(ref, table, shape(reread), target.document)
        version = version_from_meta(metas[ref])
        verdict = order_verdict(version, target.document)
        if verdict is not None:
            return verdict
        body = tombstone_body(table, version, bool(metas[ref].get("ttl", False)))
        return DocumentWrite(ref, WriteKind.TOMBSTONE, body, target.document)

    return plan


def carry_tombstones(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    old_index: str,
    new_index: str,
    key_types: Mapping[str, str],
    horizon_s: float = TOMBSTONE_HORIZON_S,
    page_size: int = 1000,
    shape: Callable[[ReadState], ReadState] = lambda read: read,
) -> int:
    """Copy the old index's tombstones younger than ``horizon_s`` into the new index.

    Each is written like any state, through ``apply_writes``: only over an older one. Run after
    the reindex alias exists, so a tombstone the stream writes later reaches both indices.
    """
    cutoff_ms = int((time.time() - horizon_s) * 1000)
    query = {
        "bool": {
            "filter": [{"term": {f"{SYNCER_FIELD}.deleted": True}}],
            "must_not": [{"range": {f"{SYNCER_FIELD}.changed_at": {"lt": cutoff_ms}}}],
        }
    }

    def planner(metas: Mapping[DocumentRef, Mapping[str, Any]]) -> Planner:
        return _tombstone_planner(table, metas, shape)

    pages = _OldIndexPages(old_index, new_index, {"query": query}, page_size)
    return _write_pages(sinks, config, table, key_types, pages, planner, read_first=False)


def _rejected(table: TableConfig, ref: DocumentRef, reason: str) -> DeadLetter:
    return DeadLetter(
        {"reindex_document_id": ref[1]}, table.name, "DocumentRejectedError", reason, None
    )


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


def tombstone_absent(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    old_index: str,
    new_index: str,
    key_types: Mapping[str, str],
    page_size: int = 1000,
    shape: Callable[[ReadState], ReadState] = lambda read: read,
) -> int:
    """Settle every document live in ``old_index`` that ``new_index`` lacks, by a fresh read.

    After a full scan (or export) into ``new_index``, such a document is an item the scan read
    as absent (deleted, or moved to another route, while its change was still on its way) that
    no stream change has reached the new index for since. It gets the state a consistent read
    finds now (``shape`` turns it into this route's view): a tombstone with the read's version
    when the item is gone, so a replay of its older changes loses after the swap as it would
    have before; the item's document when it is back. Run before the swap, while the reindex
    alias brings the stream's later changes to the new index. Returns the tombstones written.
    """
    query = {"bool": {"must_not": [{"term": {f"{SYNCER_FIELD}.deleted": True}}]}}
    return _settle_from_old(
        sinks, config, table, old_index, new_index, key_types, query, page_size, shape
    )


def catch_up(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    old_index: str,
    new_index: str,
    key_types: Mapping[str, str],
    since_s: float,
    page_size: int = 1000,
    shape: Callable[[ReadState], ReadState] = lambda read: read,
) -> int:
    """After the swap: bring into ``new_index`` what ``old_index`` learned and it did not.

    A batch can write a change to the old index and fail to write it to the new one in the
    same round (a 409 or a 429 there), then find the reindex alias gone on its next round and
    settle. ``swap_alias`` blocked writes on the old index first, so its state is final: every
    document in it changed since ``since_s`` (the reindex's start; what changed before was seen
    by the scan) whose version is newer than the new index's, or cannot be ordered against it,
    is read again and written as the table holds it now. Returns the tombstones written.
    """
    changed_since_ms = int(since_s * 1000) - _SECOND_AND_MARGIN_MS
    query = {"range": {f"{SYNCER_FIELD}.changed_at": {"gte": changed_since_ms}}}
    return _settle_from_old(
        sinks, config, table, old_index, new_index, key_types, query, page_size, shape
    )


# A change's changed_at is its whole second on DynamoDB's clock; since_s is syncer's clock.
_SECOND_AND_MARGIN_MS = 1000 + 2 * CLOCK_UNCERTAINTY_MS


def _settle_from_old(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    old_index: str,
    new_index: str,
    key_types: Mapping[str, str],
    query: Mapping[str, Any],
    page_size: int,
    shape: Callable[[ReadState], ReadState],
) -> int:
    """Re-read each document of ``old_index`` matching ``query`` whose state ``new_index``
    lacks (absent there, or older, or not comparable) and write what the read finds.
    """

    def planner(metas: Mapping[DocumentRef, Mapping[str, Any]]) -> Planner:
        versions = {ref: version_from_meta(meta) for ref, meta in metas.items()}
        return _newer_in_old_planner(table, versions, shape)

    pages = _OldIndexPages(
        old_index, new_index, {"query": query, "_source": [SYNCER_FIELD]}, page_size
    )
    return _write_pages(sinks, config, table, key_types, pages, planner, refresh_new=True)


@dataclass(frozen=True)
class _OldIndexPages:
    """Pages of the old index's documents that match ``body``, as refs into the new index."""

    old_index: str
    new_index: str
    body: Mapping[str, Any]
    page_size: int


def _write_pages(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    key_types: Mapping[str, str],
    pages: _OldIndexPages,
    planner: Callable[[Mapping[DocumentRef, Mapping[str, Any]]], Planner],
    *,
    read_first: bool = True,
    refresh_new: bool = False,
) -> int:
    """Plan each page of old documents (their ``_syncer``) into the new index; the tombstones
    written. A failed write stops the reindex (resumable).
    """
    client, guard = sinks.opensearch, sinks.opensearch_guard
    for index in (pages.old_index, pages.new_index) if refresh_new else (pages.old_index,):
        guard.call_with_retry(client.indices.refresh, index=index)
    tombstoned = 0
    for hits in scroll_pages(client, guard, pages.old_index, pages.body, pages.page_size):
        metas = {
            (pages.new_index, hit["_id"]): hit["_source"].get(SYNCER_FIELD, {}) for hit in hits
        }
        result = apply_writes(
            client,
            guard,
            list(metas),
            planner(metas),
            config.opensearch,
            reread=_rereader(sinks, table, key_types),
            read_first=read_first,
        )
        _raise_failed(result, table)
        tombstoned += result.count(Settled.TOMBSTONED)
    return tombstoned


def _newer_in_old_planner(
    table: TableConfig,
    old_versions: Mapping[DocumentRef, Version],
    shape: Callable[[ReadState], ReadState],
) -> Callable[[DocumentRef, TargetState, ReadState | None], DocumentWrite | Verdict]:
    """Leave what the new index holds when it is as new as the old index's state; else read
    the item again and write it as found (a tombstone when it is gone, even over nothing).
    """

    def plan(ref: DocumentRef, target: TargetState, reread: ReadState | None) -> Any:
        if reread is None:
            verdict = order_verdict(old_versions[ref], target.document)
            return Verdict.SKIP if verdict is Verdict.SKIP else Verdict.REREAD
        read = shape(reread)
        if read.item is None and target.document is None:  # an absent read, kept as a tombstone
            return DocumentWrite(
                ref, WriteKind.TOMBSTONE, tombstone_body(table, read.version), None
            )
        return plan_read_state(ref, table, read, target.document)

    return plan


def reindex_table(
    config: Config, sinks: Sinks, table_name: str, *, options: ReindexOptions | None = None
) -> ReindexResult:
    """Rebuild ``table_name``'s indices from one scan and swap their aliases (module docstring).

    Every route's index is rebuilt in the same scan (a plain table has one), or only
    ``options.index``; one state file (``.syncer-reindex-TABLE.json``) keeps the progress.
    """
    options = options or ReindexOptions()
    table = config.require_table(table_name)
    routes = {route.index: route for route in selected_routes(table, options.index)}
    if sinks.dynamodb is None:
        raise ConfigError("reindex needs a DynamoDB client")
    key_types = sinks.items.key_schema(table.name)  # the table exists before anything is made
    state_path = options.state_path or default_state_path(table.name)
    client = Guarded(sinks.opensearch, sinks.opensearch_guard)
    state = prepare(client, table, options.segments, state_path, index=options.index)

    def from_old_index(settle: Callable[..., int]) -> Callable[[IndexRebuild], int]:
        def step(rebuild: IndexRebuild) -> int:
            route = routes[rebuild.alias]
            view, shape = table.route_table(route), _routed_read(table, route)
            old, new = rebuild.old_index, rebuild.new_index
            return settle(sinks, config, view, old, new, key_types, shape=shape)

        return step

    _once_per_rebuild(state, state_path, "tombstones_carried", from_old_index(carry_tombstones))
    if state.seen:
        options.on_resume(state.seen)
    started = time.monotonic()
    totals = _scan_all(config, sinks, table, state, state_path, options)
    _once_per_rebuild(state, state_path, "absent_tombstoned", from_old_index(tombstone_absent))
    state.swapping = True
    save_state(state, state_path)
    for rebuild in state.rebuilds:
        if _alias_indices(client, rebuild.alias) != [rebuild.new_index]:
            view = table.route_table(routes[rebuild.alias])
            swap_alias(client, view, rebuild.new_index, rebuild.old_index)
    caught_up = functools.partial(catch_up, since_s=state.started_at)
    _once_per_rebuild(state, state_path, "caught_up", from_old_index(caught_up))
    old_indices = [rebuild.old_index for rebuild in state.rebuilds if rebuild.old_index]
    if options.delete_old and old_indices:
        time.sleep(options.delete_grace_s)  # let searches that resolved the old index finish
        for old_index in old_indices:
            client.indices.delete(index=old_index, params={"ignore_unavailable": "true"})
    state_path.unlink(missing_ok=True)
    return ReindexResult(
        totals.written,
        totals.already_newer,
        state.rejected,
        time.monotonic() - started,
        options.delete_old and bool(old_indices),
        sum(rebuild.tombstones_carried or 0 for rebuild in state.rebuilds),
        sum(rebuild.absent_tombstoned or 0 for rebuild in state.rebuilds),
        sum(rebuild.caught_up or 0 for rebuild in state.rebuilds),
        tuple((r.alias, r.new_index, r.old_index) for r in state.rebuilds),
    )


def _once_per_rebuild(
    state: ReindexState, state_path: Path, done: str, step: Callable[[IndexRebuild], int]
) -> None:
    """Run ``step`` for each rebuild with an old index whose count ``done`` is still None; the
    count is saved after each, so a resumed reindex does not run it twice.
    """
    for rebuild in state.rebuilds:
        if getattr(rebuild, done) is None:
            setattr(rebuild, done, step(rebuild) if rebuild.old_index else 0)
            save_state(state, state_path)


def _scan_all(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    state: ReindexState,
    state_path: Path,
    options: ReindexOptions,
) -> SegmentCounts:
    """Run every unfinished segment on local threads, saving the state after every page."""
    lock = threading.Lock()
    totals = [SegmentCounts()]

    def saved(progress: SegmentProgress) -> None:
        with lock:
            totals[0] += SegmentCounts(
                progress.seen, progress.written, progress.already_newer, progress.rejected
            )
            if progress.last_key is None:
                state.done_segments.append(progress.segment)
                state.last_keys.pop(str(progress.segment), None)
            else:
                state.last_keys[str(progress.segment)] = progress.last_key
            state.seen += progress.seen
            state.indexed += progress.written
            state.rejected += progress.rejected
            save_state(state, state_path)
        options.on_progress(progress)

    def run(segment: int) -> None:
        scan_segment(
            config,
            sinks,
            table.name,
            targets=state.targets,
            segment=segment,
            total_segments=state.segments,
            start_key=state.last_keys.get(str(segment)),
            page_size=options.page_size,
            on_page=saved,
        )

    left = [segment for segment in range(state.segments) if segment not in state.done_segments]
    if left:
        threads = min(len(left), MAX_SEGMENT_THREADS)
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reindex") as pool:
            for future in [pool.submit(run, segment) for segment in left]:
                future.result()
    return totals[0]


def swap_alias(client: Any, table: TableConfig, new_index: str, old_index: str | None) -> None:
    """Block writes on ``old_index``, then point the alias at ``new_index`` and drop the reindex
    alias in one atomic request.

    The block comes first, so no write can land in the old index once the reindex alias is gone:
    a batch that resolved the old index before the swap and asks for the reindex alias after it
    gets a 403 for its write, which is retried, and its retry resolves the alias anew (to the
    new index). docs/ordering.md, "The swap", argues each interleaving.
    """
    if old_index:
        client.indices.put_settings(index=old_index, body={WRITE_BLOCK: True})
    actions: list[dict[str, Any]] = []
    if old_index:
        actions.append({"remove": {"index": old_index, "alias": table.index}})
    actions.append(
        {
            "add": {
                "index": new_index,
                "alias": table.index,
                "is_write_index": True,
                "filter": LIVE_DOCUMENTS_FILTER,
            }
        }
    )
    actions.append({"remove": {"index": new_index, "alias": reindex_alias(table.index)}})
    client.indices.update_aliases(body={"actions": actions})
    log.info("alias %s now points at %s (was %s)", table.index, new_index, old_index)


@dataclass(frozen=True)
class Abandoned:
    dropped: tuple[str, ...]  # the half-built indices deleted
    unblocked: tuple[str, ...]  # serving indices whose write block (from a swap) was lifted


def abandon(
    sinks: Sinks, table: TableConfig, state_path: Path, *, index: str | None = None
) -> Abandoned:
    """Drop a running reindex: its reindex aliases, the indices they point at, its state file.

    The indices the table's aliases serve are kept; a write block a swap that never finished
    left on one of them is lifted. Only indices behind a reindex alias are deleted.
    """
    client = Guarded(sinks.opensearch, sinks.opensearch_guard)
    dropped: list[str] = []
    unblocked: list[str] = []
    for route in selected_routes(table, index):
        serving = _alias_indices(client, route.index)
        for building in _alias_indices(client, reindex_alias(route.index)):
            if building in serving:
                raise SyncerError(
                    f"{building} is behind both {route.index!r} and its reindex alias; "
                    f"remove the alias {reindex_alias(route.index)!r} by hand"
                )
            client.indices.delete(index=building)
            dropped.append(building)
        for name in serving:
            settings = client.indices.get_settings(index=name, name=WRITE_BLOCK)
            block = settings.get(name, {}).get("settings", {}).get("index", {}).get("blocks", {})
            if str(block.get("write", "false")).lower() == "true":
                client.indices.put_settings(index=name, body={WRITE_BLOCK: None})
                unblocked.append(name)
    state_path.unlink(missing_ok=True)
    return Abandoned(tuple(dropped), tuple(unblocked))
