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
   ``syncer.core.rounds.write_documents``: it replaces only older states, and the stream's
   newer changes replace it (docs/ordering.md).
4. Tombstone what the scan read as absent (``tombstone_absent``): a document live in the old
   index and absent from the new one gets the state a consistent read finds now, a tombstone
   with that read's version when the item is gone, so its older changes stay refused.
5. Swap (``swap_alias``): block writes on the old index, then point the alias at the new one and
   drop the reindex alias in one ``POST _aliases``. A batch that resolved the old index before
   the swap gets a 403 and re-resolves the alias on its retry (docs/ordering.md, "The swap").
6. Catch up (``catch_up``): the old index, frozen by the block, may hold changes a batch wrote
   there but not to the new index (a 409 or 429 there, then no reindex alias on its retry):
   each document changed since the reindex began that is newer there is read again and written.

The rebuild is a job (``syncer.core.jobs``) stored in OpenSearch: claimed atomically (one per
table), its phase and every page's progress written conditionally, so a killed reindex resumes
where its record says, from any machine; ``abandon`` fences the job, then drops its indices.

Each step has a module of its own: ``targets`` (1, and ``abandon``), ``settle`` (2, 4 and 6),
``scan`` (3), ``swap`` (5), ``phases`` (4 to 6 as job phases, shared with the export and the
state machine); ``state`` holds the options and the results, and ``writes`` what the scan and
the settling steps share. This module runs them in order (``reindex_table``) and re-exports
their public names.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from syncer.commands.jobs import JobHandle, job_store, new_owner, start_job, this_holder
from syncer.commands.reindex.phases import finish_phases
from syncer.commands.reindex.scan import (
    MAX_SEGMENT_THREADS,
    scan_job_segments,
    scan_segment,
    segment_key,
)
from syncer.commands.reindex.settle import (
    TOMBSTONE_HORIZON_S,
    carry_tombstones,
    catch_up,
    tombstone_absent,
)
from syncer.commands.reindex.state import (
    DEFAULT_PAGE_SIZE,
    MAX_SEGMENTS,
    ReindexOptions,
    ReindexResult,
    SegmentCounts,
    SegmentProgress,
    check_scan_arguments,
)
from syncer.commands.reindex.swap import WRITE_BLOCK, block_writes, move_alias, swap_alias
from syncer.commands.reindex.targets import (
    Abandoned,
    abandon,
    plan_rebuilds,
    prepare_indices,
    selected_routes,
)
from syncer.commands.reindex.writes import routed_read
from syncer.config import Config, TableConfig
from syncer.core.jobs import LOAD, PREPARE, Advance, Job, Rebuild
from syncer.errors import ConfigError
from syncer.sinks.ports import Sinks
from syncer.sinks.search import reindex_alias

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_THREADS",
    "TOMBSTONE_HORIZON_S",
    "WRITE_BLOCK",
    "Abandoned",
    "ReindexOptions",
    "ReindexResult",
    "SegmentCounts",
    "SegmentProgress",
    "abandon",
    "block_writes",
    "carry_tombstones",
    "catch_up",
    "check_scan_arguments",
    "finish_phases",
    "move_alias",
    "new_job",
    "plan_rebuilds",
    "prepare_indices",
    "reindex_table",
    "scan_segment",
    "scan_settle",
    "selected_routes",
    "start_scan_job",
    "swap_alias",
    "tombstone_absent",
]

# finish_phases calls swap_alias and catch_up through this module's names, so a test that
# patches ``reindex.swap_alias`` (or ``catch_up``) reaches it.


def new_job(
    sinks: Sinks,
    table: TableConfig,
    kind: str,
    owner: str,
    index: str | None = None,
    **source: Any,
) -> Job:
    """A new job of ``table`` in its prepare phase: its indices named, nothing made yet."""
    now = time.time()
    rebuilds = plan_rebuilds(sinks.admin, table, selected_routes(table, index))
    return Job(
        id=f"{table.name}-{uuid.uuid4().hex[:8]}",
        table=table.name,
        kind=kind,
        owner=owner,
        epoch=1,
        phase=PREPARE,
        started_at=now,
        heartbeat_at=now,
        holder=this_holder(),
        rebuilds=rebuilds,
        **source,
    )


def _same_indices(job: Job, table: TableConfig, index: str | None) -> str | None:
    wanted = sorted(route.index for route in selected_routes(table, index))
    if sorted(job.targets) != wanted:
        return f"it rebuilds {sorted(job.targets)}, this one {wanted}"
    return None


def start_scan_job(
    sinks: Sinks,
    table: TableConfig,
    segments: int,
    *,
    index: str | None = None,
    delete_old: bool = False,
    owner: str | None = None,
) -> tuple[JobHandle, bool]:
    """Claim a scan job of ``table``, or resume its stopped one (with that job's segments)."""
    check_scan_arguments(segments, DEFAULT_PAGE_SIZE)
    owner = owner or new_owner()

    def plan() -> Job:
        return new_job(
            sinks,
            table,
            "scan",
            owner,
            index,
            segments=segments,
            work_items=tuple(segment_key(number) for number in range(segments)),
            delete_old=delete_old,
        )

    def resumes(job: Job) -> str | None:
        if job.kind != "scan":
            return f"it loads the export {job.export_uri}"
        return _same_indices(job, table, index)

    return start_job(job_store(sinks), table.name, plan, resumes, owner)


def scan_settle(
    config: Config, sinks: Sinks, table: TableConfig
) -> Callable[[Rebuild], tuple[int, int]]:
    """A scan's settle phase: what the scan read as absent, tombstoned (``tombstone_absent``)."""
    key_types = sinks.items.key_schema(table.name)
    routes = {route.index: route for route in table.resolved_routes}

    def settle(rebuild: Rebuild) -> tuple[int, int]:
        route = routes[rebuild.alias]
        view, shape = table.route_table(route), routed_read(table, route)
        old, target = rebuild.old_index or "", reindex_alias(rebuild.alias)
        return 0, tombstone_absent(sinks, config, view, old, target, key_types, shape=shape)

    return settle


def reindex_table(
    config: Config, sinks: Sinks, table_name: str, *, options: ReindexOptions | None = None
) -> ReindexResult:
    """Rebuild ``table_name``'s indices from one scan and swap their aliases (module docstring).

    Every route's index is rebuilt in the same scan (a plain table has one), or only
    ``options.index``; the job record keeps the progress, and a rerun resumes its phase.
    """
    options = options or ReindexOptions()
    table = config.require_table(table_name)
    selected_routes(table, options.index)
    if sinks.clients is not None and sinks.clients.dynamodb is None:
        raise ConfigError("reindex needs a DynamoDB client")
    sinks.items.key_schema(table.name)  # the table exists before anything is made
    handle, resumed = start_scan_job(
        sinks, table, options.segments, index=options.index, delete_old=options.delete_old
    )
    started = time.monotonic()
    totals = SegmentCounts()
    with handle.holding():
        prepare_indices(config, sinks, handle)
        if handle.job.phase == LOAD:
            seen = sum(progress.items for progress in handle.job.progress.values())
            if resumed and seen:
                options.on_resume(seen)
            totals = scan_job_segments(config, sinks, handle, options)
            handle.apply(Advance(LOAD))
        job = finish_phases(
            config,
            sinks,
            handle,
            scan_settle(config, sinks, table),
            delete_grace_s=options.delete_grace_s,
        )
    return ReindexResult(
        totals.written,
        totals.already_newer,
        sum(progress.rejected for progress in job.progress.values()),
        time.monotonic() - started,
        job.delete_old and any(rebuild.old_index for rebuild in job.rebuilds),
        sum(rebuild.tombstones_carried or 0 for rebuild in job.rebuilds),
        sum(rebuild.absent_tombstoned or 0 for rebuild in job.rebuilds),
        sum(rebuild.caught_up or 0 for rebuild in job.rebuilds),
        tuple((r.alias, r.new_index, r.old_index) for r in job.rebuilds),
    )
