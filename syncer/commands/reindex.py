"""Rebuild a table's index from a parallel DynamoDB scan, with no downtime (``syncer reindex``).

1. Create the next versioned index (``catalog-000002``) from the template and point the alias
   ``catalog-reindexing`` at it. From then on every batch writes stream changes to it too
   (``syncer.sinks.search.reindex_alias``): each batch with writes asks whether it exists (``HEAD``).
2. Carry the old index's tombstones younger than the replay horizon into the new index, so a
   change delivered again after the swap cannot bring a deleted item back.
3. Scan the table in parallel segments, page by page (memory bounded by segments x page size,
   not by the table), and write each item's document with its read version through
   ``syncer.sinks.search.apply_writes``: it replaces only older states, and the stream's newer
   changes replace it (docs/ordering.md).
4. Swap the alias to the new index in one ``POST _aliases`` and drop ``catalog-reindexing``.

Progress is saved after every page in a state file, so a crashed reindex resumes where it was.
"""

from __future__ import annotations

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
from syncer.core.versions import Version, version_from_meta
from syncer.errors import ConfigError, DownstreamUnavailableError, PoisonRecordError, SyncerError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER, create_versioned_index, versioned_index_name
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Guarded
from syncer.sinks.search import ApplyResult, apply_writes, reindex_alias, scroll_pages

log = logging.getLogger(__name__)
DEFAULT_PAGE_SIZE = 500
# Tombstones younger than this are carried into a new index: the stream's 24 hours plus the 14
# days the deployed dead-letter queue keeps messages (the purge-tombstones default, too).
TOMBSTONE_HORIZON_S = 15 * 86_400


@dataclass
class ReindexState:
    """What survives a crash: the target index and how far each scan segment got."""

    table: str
    new_index: str
    old_index: str | None
    segments: int
    last_keys: dict[str, Any] = field(default_factory=dict)  # segment -> LastEvaluatedKey
    done_segments: list[int] = field(default_factory=list)
    indexed: int = 0
    rejected: int = 0
    started_at: float = field(default_factory=time.time)
    tombstones_carried: int | None = None  # None until the old index's tombstones were copied


@dataclass(frozen=True)
class ReindexResult:
    new_index: str
    old_index: str | None
    indexed: int
    already_newer: int
    rejected: int
    seconds: float
    old_deleted: bool
    tombstones_carried: int = 0
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
    if not path.exists():
        return None
    raw = jsoncodec.loads(path.read_bytes())
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


def prepare(client: Any, table: TableConfig, segments: int, state_path: Path) -> ReindexState:
    """Resume the reindex in ``state_path``, or create the next index and its reindex alias."""
    target_alias = reindex_alias(table.index)
    state = load_state(state_path)
    running = _alias_indices(client, target_alias)
    if state is not None and state.table == table.name and running == [state.new_index]:
        log.info("resuming reindex of %s into %s", table.name, state.new_index)
        return state
    if running:
        raise SyncerError(
            f"a reindex of {table.name!r} into {running} is in progress but {state_path} does not "
            f"describe it; pass its --state-file, or remove the alias {target_alias!r} to abandon it"
        )
    current = _alias_indices(client, table.index)
    if len(current) > 1:
        raise ConfigError(f"alias {table.index!r} points at several indices: {current}")
    old_index = current[0] if current else None
    existing = client.indices.get(index=f"{table.index}-0*", params={"ignore_unavailable": "true"})
    generation = max([_generation(name, table.index) for name in existing] + [0]) + 1
    new_index = versioned_index_name(table.index, generation)
    create_versioned_index(client, table, new_index, with_alias=False)
    client.indices.put_alias(index=new_index, name=target_alias)
    state = ReindexState(table.name, new_index, old_index, segments)
    save_state(state, state_path)
    log.info("reindexing %s into %s (old: %s)", table.name, new_index, old_index)
    return state


@dataclass(frozen=True)
class _PageCounts:
    indexed: int
    already_newer: int
    rejected: int


def _routed_read(table: TableConfig, route: Route) -> Callable[[ReadState], ReadState]:
    """A read of the table as ``route``'s index holds it: routed, transformed, else absent."""

    def shape(read: ReadState) -> ReadState:
        if not table.routes:
            return read
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
) -> _PageCounts:
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
    letters.extend(_rejected(table, ref, o.reason) for ref, o in _outcomes(result, Settled.REJECTED))
    _raise_failed(result, table)
    if letters:
        sinks.deadletter_guard.call_with_retry(sinks.deadletters.write, letters)
    written = result.count(Settled.WRITTEN) + result.count(Settled.TOMBSTONED)
    return _PageCounts(written, result.count(Settled.SKIPPED), len(letters))


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
    client, guard = sinks.opensearch, sinks.opensearch_guard
    guard.call_with_retry(client.indices.refresh, index=old_index)
    carried = 0
    for hits in scroll_pages(client, guard, old_index, {"query": query}, page_size):
        metas = {(new_index, hit["_id"]): hit["_source"].get(SYNCER_FIELD, {}) for hit in hits}

        result = apply_writes(
            client,
            guard,
            list(metas),
            _tombstone_planner(table, metas, shape),
            config.opensearch,
            reread=_rereader(sinks, table, key_types),
            read_first=False,
        )
        _raise_failed(result, table)
        carried += result.count(Settled.TOMBSTONED)
    return carried


def _rejected(table: TableConfig, ref: DocumentRef, reason: str) -> DeadLetter:
    return DeadLetter(
        {"reindex_document_id": ref[1]}, table.name, "DocumentRejectedError", reason, None
    )


def reindex_table(
    config: Config,
    sinks: Sinks,
    table_name: str,
    segments: int = 4,
    page_size: int = DEFAULT_PAGE_SIZE,
    state_path: Path | None = None,
    delete_old: bool = False,
    delete_grace_s: float = 0.0,
    on_progress: Callable[[int], None] = lambda _: None,
    index: str | None = None,
) -> ReindexResult:
    """Rebuild ``table_name``'s indices from one scan and swap their aliases (module docstring).

    A routed table rebuilds every route's index in the same scan, or only ``index``; each index
    keeps its own state file (``.syncer-reindex-TABLE.INDEX.json``) with the scan's progress.
    """
    table = config.require_table(table_name)
    routes = [route for route in table.resolved_routes if index in (None, route.index)]
    if not routes:
        indices = ", ".join(route.index for route in table.resolved_routes)
        raise ConfigError(f"table {table.name!r} has no index {index!r} (its indices: {indices})")
    state_path = state_path or default_state_path(table.name)
    paths = [
        state_path
        if not table.routes
        else state_path.with_name(f"{state_path.stem}.{route.index}{state_path.suffix}")
        for route in routes
    ]
    client = Guarded(sinks.opensearch, sinks.opensearch_guard)
    states = [
        prepare(client, table.route_table(route), segments, path)
        for route, path in zip(routes, paths, strict=True)
    ]
    lead = states[0]
    progress = {(tuple(sorted(s.done_segments)), jsoncodec.dumps(s.last_keys)) for s in states}
    if len(progress) > 1 or len({s.segments for s in states}) > 1:
        # An index was (re)created since the others' progress: scan from the start for all.
        for state in states:
            state.last_keys, state.done_segments, state.segments = {}, [], lead.segments
    if sinks.dynamodb is None:
        raise ConfigError("reindex needs a DynamoDB client")
    key_types = sinks.items.key_schema(table.name)
    for route, state, path in zip(routes, states, paths, strict=True):
        if state.tombstones_carried is None:
            state.tombstones_carried = 0
            if state.old_index:
                state.tombstones_carried = carry_tombstones(
                    sinks,
                    config,
                    table.route_table(route),
                    state.old_index,
                    state.new_index,
                    key_types,
                    shape=_routed_read(table, route),
                )
            save_state(state, path)
    targets = {route.index: state.new_index for route, state in zip(routes, states, strict=True)}
    totals = {"indexed": 0, "already_newer": 0, "rejected": lead.rejected}
    lock = threading.Lock()
    started = time.monotonic()

    def run_segment(segment: int) -> None:
        if segment in lead.done_segments:
            return
        start = lead.last_keys.get(str(segment))
        start_key = boto_key(start) if start else None
        pages = sinks.items.scan(
            table.name,
            segment=segment,
            total_segments=lead.segments,
            start_key=start_key,
            page_size=page_size,
        )
        for page in pages:
            raw_items, last = page.items, page.last_key
            counts = _index_page(sinks, config, table, targets, key_types, raw_items, page.version)
            with lock:
                totals["indexed"] += counts.indexed
                totals["already_newer"] += counts.already_newer
                totals["rejected"] += counts.rejected
                for state, path in zip(states, paths, strict=True):
                    if last:
                        state.last_keys[str(segment)] = lambda_key(last)
                    else:
                        state.done_segments.append(segment)
                    state.indexed += counts.indexed
                    state.rejected = totals["rejected"]
                    save_state(state, path)
            on_progress(len(raw_items))

    with ThreadPoolExecutor(max_workers=lead.segments, thread_name_prefix="reindex") as pool:
        for future in [pool.submit(run_segment, s) for s in range(lead.segments)]:
            future.result()

    for route, state in zip(routes, states, strict=True):
        swap_alias(client, table.route_table(route), state.new_index, state.old_index)
    old_deleted = False
    if delete_old and any(state.old_index for state in states):
        time.sleep(delete_grace_s)  # let batches that resolved the old index finish writing
        for state in states:
            if state.old_index:
                client.indices.delete(index=state.old_index)
        old_deleted = True
    for path in paths:
        path.unlink(missing_ok=True)
    return ReindexResult(
        lead.new_index,
        lead.old_index,
        totals["indexed"],
        totals["already_newer"],
        totals["rejected"],
        time.monotonic() - started,
        old_deleted,
        sum(state.tombstones_carried or 0 for state in states),
        tuple(
            (route.index, state.new_index, state.old_index)
            for route, state in zip(routes, states, strict=True)
        ),
    )


def swap_alias(client: Any, table: TableConfig, new_index: str, old_index: str | None) -> None:
    """Point the alias at ``new_index`` and drop the reindex alias, in one atomic request."""
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
