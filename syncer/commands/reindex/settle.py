"""The new index settled against the old one: its young tombstones carried
(``carry_tombstones``), what the scan read as absent tombstoned (``tombstone_absent``), and
after the swap what the old index learned and the new one did not caught up (``catch_up``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from syncer.commands.reindex.writes import raise_failed, rereader
from syncer.config import Config, TableConfig
from syncer.config.names import REINDEXING_SUFFIX
from syncer.core.command_planners import CarriedTombstonePlanner, NewerInOldPlanner
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentRef,
    ReadState,
    Settled,
)
from syncer.core.rounds import write_documents
from syncer.core.versions import CLOCK_UNCERTAINTY_MS, version_from_meta
from syncer.sinks.ports import Sinks
from syncer.sinks.search import Planner, WriteOptions

# Tombstones younger than this are carried into a new index: the stream's 24 hours plus the 14
# days the deployed dead-letter queue keeps messages (the purge-tombstones default, too).
TOMBSTONE_HORIZON_S = 15 * 86_400


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
        return CarriedTombstonePlanner(table, metas, shape)

    pages = _OldIndexPages(old_index, new_index, {"query": query}, page_size)
    return _write_pages(sinks, config, table, key_types, pages, planner, read_first=False)


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
        return NewerInOldPlanner(table, versions, shape)

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
    search = sinks.search
    for index in (pages.old_index, pages.new_index) if refresh_new else (pages.old_index,):
        search.refresh(index)
    tombstoned = 0
    for hits in search.scroll(pages.old_index, pages.body, pages.page_size):
        metas = {
            (pages.new_index, hit["_id"]): hit["_source"].get(SYNCER_FIELD, {}) for hit in hits
        }
        options = WriteOptions(
            reread=rereader(sinks, table, key_types),
            read_first=read_first,
            # a rebuild writes its new index through its reindex alias: once the alias is
            # dropped (--abandon), no write can bring the index back by name
            require_alias=pages.new_index.endswith(REINDEXING_SUFFIX),
        )
        result = write_documents(search, list(metas), planner(metas), options)
        raise_failed(result, table)
        tombstoned += result.count(Settled.TOMBSTONED)
    return tombstoned
