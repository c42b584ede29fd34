"""Step 3, once every work item is loaded: the old indices' live documents carried into the new
ones (an export's settle phase), or absent reads tombstoned (a scan's), then the job's block,
swap and catch-up phases (``reindex.finish_phases``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from syncer.commands import reindex
from syncer.commands.exports.load import settle_page
from syncer.commands.jobs import JobHandle
from syncer.commands.reindex.writes import rereader, route_named, routed_read
from syncer.config import Config, TableConfig
from syncer.core.command_planners import CarryPlanner
from syncer.core.documents import (
    SYNCER_FIELD,
    Settled,
)
from syncer.core.exports import ExportFormatError
from syncer.core.jobs import FINISHED, LOAD, Advance, Rebuild
from syncer.core.rounds import write_documents
from syncer.core.versions import Order, Version, compare, version_from_meta
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER
from syncer.sinks.ports import SearchAdmin, Sinks
from syncer.sinks.search import WriteOptions, reindex_alias


@dataclass(frozen=True)
class FinishCounts:
    carried: int
    absent_tombstoned: int


def _found(admin: SearchAdmin, index: str, ids: Sequence[str], source: bool) -> dict[str, Any]:
    """The documents of ``ids`` that ``index`` holds (realtime ``_mget``): id -> ``_source``."""
    return {
        doc_id: doc.get("_source")
        for doc_id, doc in admin.documents(index, ids, source=source).items()
    }


def _primary_shards(admin: SearchAdmin, index: str) -> int:
    return admin.primary_shards(index)


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
    search, admin = sinks.search, sinks.admin
    search.refresh(old_index)
    slices = slices or _primary_shards(admin, old_index)
    planner_shape = routed_read(table, route_named(table, alias))

    def carry_page(hits: Sequence[Mapping[str, Any]]) -> FinishCounts:
        older, candidates = [], []
        for hit in hits:
            version = version_from_meta(hit["_source"].get(SYNCER_FIELD) or {})
            if compare(version, export_version) is Order.OLDER:
                older.append(hit["_id"])
            else:
                candidates.append(hit["_id"])
        present = _found(admin, new_index, older, source=False)
        candidates += [doc_id for doc_id in older if doc_id not in present]
        sources = _found(admin, old_index, candidates, source=True)
        olds = {(new_index, doc_id): source for doc_id, source in sources.items()}
        if not olds:
            return FinishCounts(0, 0)
        result = write_documents(
            search,
            list(olds),
            CarryPlanner(route_table, olds, export_version, planner_shape),
            WriteOptions(reread=rereader(sinks, table, key_types), require_alias=True),
        )
        settle_page(sinks, table, result, [], len(olds))
        return FinishCounts(result.count(Settled.WRITTEN), result.count(Settled.TOMBSTONED))

    def carry_slice(number: int) -> FinishCounts:
        body: dict[str, Any] = {"query": LIVE_DOCUMENTS_FILTER, "_source": [SYNCER_FIELD]}
        if slices > 1:
            body["slice"] = {"id": number, "max": slices}
        totals = FinishCounts(0, 0)
        for hits in search.scroll(old_index, body, page_size):
            counts = carry_page(hits)
            totals = FinishCounts(
                totals.carried + counts.carried,
                totals.absent_tombstoned + counts.absent_tombstoned,
            )
        return totals

    with ThreadPoolExecutor(slices, thread_name_prefix="export-finish") as pool:
        results = list(pool.map(carry_slice, range(slices)))
    return FinishCounts(sum(r.carried for r in results), sum(r.absent_tombstoned for r in results))


def finish_export(config: Config, sinks: Sinks, handle: JobHandle) -> FinishCounts:
    """Step 3, once every work item is loaded: the job from the phase its record names to done
    (settle, block, swap, catch-up: ``reindex.finish_phases``). Finishing a finished job
    again changes nothing and returns its counts."""
    job = handle.job
    table = config.require_table(job.table)
    key_types = sinks.items.key_schema(table.name)
    if job.phase == LOAD:
        job = handle.apply(Advance(LOAD))  # refused while a work item is not loaded
    if job.phase not in FINISHED:
        if job.export_uri:
            export_version = version_from_meta(job.read_version)
            if not export_version.is_read:
                raise ExportFormatError("the job carries no export version: abandon it")

            def carry(rebuild: Rebuild) -> tuple[int, int]:
                counts = carry_live_documents(
                    config,
                    sinks,
                    table,
                    rebuild.alias,
                    rebuild.old_index or "",
                    reindex_alias(rebuild.alias),
                    export_version,
                    key_types,
                )
                return counts.carried, counts.absent_tombstoned

            settle: Callable[[Rebuild], tuple[int, int]] = carry
        else:
            settle = reindex.scan_settle(config, sinks, table)
        job = reindex.finish_phases(config, sinks, handle, settle)
    return FinishCounts(
        sum(rebuild.settled or 0 for rebuild in job.rebuilds),
        sum(rebuild.absent_tombstoned or 0 for rebuild in job.rebuilds),
    )
