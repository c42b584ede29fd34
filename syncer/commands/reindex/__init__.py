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

Each step has a module of its own: ``targets`` (1, and ``abandon``), ``settle`` (2, 4 and 6),
``scan`` (3), ``swap`` (5); ``state`` holds the options, the state file and the results, and
``writes`` what the scan and the settling steps share. This module runs them in order
(``reindex_table``) and re-exports their public names.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from syncer.commands.reindex.scan import MAX_SEGMENT_THREADS, _scan_all, scan_segment
from syncer.commands.reindex.settle import (
    TOMBSTONE_HORIZON_S,
    carry_tombstones,
    catch_up,
    tombstone_absent,
)
from syncer.commands.reindex.state import (
    DEFAULT_PAGE_SIZE,
    MAX_SEGMENTS,
    IndexRebuild,
    ReindexOptions,
    ReindexResult,
    ReindexState,
    SegmentCounts,
    SegmentProgress,
    check_scan_arguments,
    default_state_path,
    load_state,
    save_state,
)
from syncer.commands.reindex.swap import WRITE_BLOCK, swap_alias
from syncer.commands.reindex.targets import (
    Abandoned,
    _alias_indices,
    abandon,
    prepare,
    selected_routes,
)
from syncer.commands.reindex.writes import _routed_read
from syncer.config import Config
from syncer.errors import ConfigError
from syncer.sinks.ports import Sinks

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_THREADS",
    "TOMBSTONE_HORIZON_S",
    "WRITE_BLOCK",
    "Abandoned",
    "IndexRebuild",
    "ReindexOptions",
    "ReindexResult",
    "ReindexState",
    "SegmentCounts",
    "SegmentProgress",
    "abandon",
    "carry_tombstones",
    "catch_up",
    "check_scan_arguments",
    "default_state_path",
    "load_state",
    "prepare",
    "reindex_table",
    "save_state",
    "scan_segment",
    "selected_routes",
    "swap_alias",
    "tombstone_absent",
]

# reindex_table calls swap_alias and catch_up through this module's names, so a test that
# patches ``reindex.swap_alias`` (or ``catch_up``) reaches it.


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
    client = sinks.search_admin
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
