"""Rebuild a table's index from a parallel DynamoDB scan, with no downtime (``syncer reindex``).

1. Create the next versioned index (``catalog-000002``) from the template and point the alias
   ``catalog-reindexing`` at it. From then on every batch writes stream changes to it too
   (``syncer.search.reindex_alias``): each batch discovers it in the ``_mget`` it makes anyway.
2. Scan the table in parallel segments, page by page (memory bounded by segments x page size,
   not by the table), and ``create`` each item's document: a scanned document never replaces
   one the stream wrote, and any stream change replaces a scanned one (docs/ordering.md).
3. Swap the alias to the new index in one ``POST _aliases`` and drop ``catalog-reindexing``.

Progress is saved after every page in a state file, so a crashed reindex resumes where it was.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syncer import jsoncodec
from syncer.attributes import decode_item
from syncer.config import Config, TableConfig
from syncer.deadletter import DeadLetter
from syncer.errors import ConfigError, PoisonRecordError, SyncerError
from syncer.indices import LIVE_DOCUMENTS_FILTER, create_versioned_index, versioned_index_name
from syncer.pipeline import Sinks
from syncer.plan import document_body
from syncer.records import document_id
from syncer.resilience import PendingItemsError
from syncer.search import (
    DocumentWrite,
    ItemStatus,
    WriteKind,
    bulk_chunks,
    reindex_alias,
    send_bulk,
)

log = logging.getLogger(__name__)
DEFAULT_PAGE_SIZE = 500


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


@dataclass(frozen=True)
class ReindexResult:
    new_index: str
    old_index: str | None
    indexed: int
    already_newer: int
    rejected: int
    seconds: float
    old_deleted: bool


def default_state_path(table: str) -> Path:
    return Path(f".syncer-reindex-{table}.json")


def _key_to_json(key: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"B64": base64.b64encode(v["B"]).decode()} if "B" in v else dict(v)
        for name, v in key.items()
    }


def _key_from_json(key: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"B": base64.b64decode(v["B64"])} if "B64" in v else dict(v)
        for name, v in key.items()
    }


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


def _scan_pages(
    sinks: Sinks,
    table: str,
    segment: int,
    total: int,
    start_key: Mapping[str, Any] | None,
    page_size: int,
) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
    request: dict[str, Any] = {
        "TableName": table,
        "Segment": segment,
        "TotalSegments": total,
        "Limit": page_size,
        "ConsistentRead": True,
    }
    if start_key:
        request["ExclusiveStartKey"] = dict(start_key)
    guard = sinks.dynamodb_guard
    while True:
        page = guard.call_with_retry(sinks.dynamodb.scan, **request)
        last = page.get("LastEvaluatedKey")
        yield page.get("Items", []), last
        if not last:
            return
        request["ExclusiveStartKey"] = last


@dataclass(frozen=True)
class _PageCounts:
    indexed: int
    already_newer: int
    rejected: int


def _index_page(
    sinks: Sinks,
    config: Config,
    table: TableConfig,
    new_index: str,
    key_names: list[str],
    raw_items: list[dict[str, Any]],
) -> _PageCounts:
    """``create`` each scanned item's document; 409 means the stream already wrote a newer one."""
    now = time.time()
    writes: list[DocumentWrite] = []
    letters: list[DeadLetter] = []
    for raw in raw_items:
        try:
            item = decode_item(raw)
            doc_id = document_id({name: item[name] for name in key_names})
            source = document_body(item, table, None, None, scanned_at=now)
        except PoisonRecordError as error:
            letters.append(
                DeadLetter({"reindex_item": raw}, table.name, "PoisonRecordError", str(error), None)
            )
            continue
        writes.append(DocumentWrite((new_index, doc_id), WriteKind.INDEX, source, None))
    limits = config.opensearch
    guard = sinks.opensearch_guard
    indexed = already_newer = 0
    pending = writes
    for attempt in guard.retrying():
        with attempt:
            retry: list[DocumentWrite] = []
            unencodable: list[tuple[DocumentWrite, str]] = []
            chunks = bulk_chunks(
                pending, limits.bulk_max_actions, limits.bulk_max_bytes, unencodable
            )
            for chunk, payload in chunks:
                results = guard.call(send_bulk, sinks.opensearch, payload, chunk)
                for write in chunk:
                    result = results[write.ref]
                    if result.status is ItemStatus.OK:
                        indexed += 1
                    elif result.status is ItemStatus.CONFLICT:
                        already_newer += 1
                    elif result.status is ItemStatus.PERMANENT:
                        letters.append(_rejected(table, write, result.reason))
                    else:
                        retry.append(write)
            letters.extend(_rejected(table, write, reason) for write, reason in unencodable)
            pending = retry
            if pending:
                raise PendingItemsError(len(pending), "bulk items to retry")
    if letters:
        sinks.deadletter_guard.call_with_retry(sinks.deadletters.write, letters)
    return _PageCounts(indexed, already_newer, len(letters))


def _rejected(table: TableConfig, write: DocumentWrite, reason: str) -> DeadLetter:
    return DeadLetter(
        {"reindex_document_id": write.ref[1]}, table.name, "DocumentRejectedError", reason, None
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
) -> ReindexResult:
    """Rebuild ``table_name``'s index from a scan and swap its alias; see the module docstring."""
    table = config.require_table(table_name)
    state_path = state_path or default_state_path(table.name)
    client = sinks.opensearch
    state = prepare(client, table, segments, state_path)
    if sinks.dynamodb is None:
        raise ConfigError("reindex needs a DynamoDB client")
    description = sinks.dynamodb.describe_table(TableName=table.name)["Table"]
    key_names = [key["AttributeName"] for key in description["KeySchema"]]
    totals = {"indexed": 0, "already_newer": 0, "rejected": state.rejected}
    lock = threading.Lock()
    started = time.monotonic()

    def run_segment(segment: int) -> None:
        if segment in state.done_segments:
            return
        start = state.last_keys.get(str(segment))
        start_key = _key_from_json(start) if start else None
        pages = _scan_pages(sinks, table.name, segment, state.segments, start_key, page_size)
        for raw_items, last in pages:
            counts = _index_page(sinks, config, table, state.new_index, key_names, raw_items)
            with lock:
                totals["indexed"] += counts.indexed
                totals["already_newer"] += counts.already_newer
                totals["rejected"] += counts.rejected
                if last:
                    state.last_keys[str(segment)] = _key_to_json(last)
                else:
                    state.done_segments.append(segment)
                state.indexed += counts.indexed
                state.rejected = totals["rejected"]
                save_state(state, state_path)
            on_progress(len(raw_items))

    with ThreadPoolExecutor(max_workers=state.segments, thread_name_prefix="reindex") as pool:
        for future in [pool.submit(run_segment, s) for s in range(state.segments)]:
            future.result()

    swap_alias(client, table, state.new_index, state.old_index)
    old_deleted = False
    if delete_old and state.old_index:
        time.sleep(delete_grace_s)  # let batches that resolved the old index finish writing
        client.indices.delete(index=state.old_index)
        old_deleted = True
    state_path.unlink(missing_ok=True)
    return ReindexResult(
        state.new_index,
        state.old_index,
        totals["indexed"],
        totals["already_newer"],
        totals["rejected"],
        time.monotonic() - started,
        old_deleted,
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
