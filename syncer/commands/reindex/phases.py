"""A rebuild's last phases, the same for a scan, an export and the state machine: settle,
block, swap, catch-up, done; each entered by a fenced conditional write on the job, each safe
to run again (docs/ordering.md, "The rebuild job")."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from syncer.commands.jobs import JobHandle
from syncer.commands.reindex.targets import _alias_indices
from syncer.commands.reindex.writes import _routed_read
from syncer.config import Config
from syncer.core.jobs import BLOCK, CATCH_UP, SETTLE, SWAP, Advance, Counted, Job, Rebuild
from syncer.sinks.ports import Sinks

log = logging.getLogger("syncer.commands.reindex")
# settle(rebuild) -> (documents carried over, tombstones written)
Settle = Callable[[Rebuild], tuple[int, int]]


def finish_phases(
    config: Config,
    sinks: Sinks,
    handle: JobHandle,
    settle: Settle,
    *,
    delete_grace_s: float = 0.0,
) -> Job:
    """Run the job from the phase its record names to ``done``; returns the finished job."""
    from syncer.commands import reindex  # its catch_up, block_writes, swap_alias: tests patch them

    table = config.require_table(handle.job.table)
    key_types = sinks.items.key_schema(table.name)
    routes = {route.index: route for route in table.resolved_routes}
    client = sinks.search_admin
    if handle.job.phase == SETTLE:
        for rebuild in handle.job.rebuilds:
            if rebuild.settled is None:
                carried, tombstoned = settle(rebuild) if rebuild.old_index else (0, 0)
                handle.apply(Counted(rebuild.alias, "absent_tombstoned", tombstoned))
                handle.apply(Counted(rebuild.alias, "settled", carried))
        handle.apply(Advance(SETTLE))
    if handle.job.phase == BLOCK:
        for rebuild in handle.job.rebuilds:
            handle.refresh()  # fenced: an abandoned job blocks nothing
            reindex.block_writes(client, rebuild.old_index)
        handle.apply(Advance(BLOCK))
    if handle.job.phase == SWAP:
        for rebuild in handle.job.rebuilds:
            handle.refresh()  # the fence, checked right before each swap
            if _alias_indices(client, rebuild.alias) != [rebuild.new_index]:
                view = table.route_table(routes[rebuild.alias])
                reindex.swap_alias(client, view, rebuild.new_index, rebuild.old_index)
        handle.apply(Advance(SWAP))
    if handle.job.phase == CATCH_UP:
        for rebuild in handle.job.rebuilds:
            if rebuild.caught_up is None:
                caught_up = 0
                if rebuild.old_index:
                    route = routes[rebuild.alias]
                    caught_up = reindex.catch_up(
                        sinks,
                        config,
                        table.route_table(route),
                        rebuild.old_index,
                        rebuild.new_index,
                        key_types,
                        since_s=handle.job.started_at,
                        shape=_routed_read(table, route),
                    )
                handle.apply(Counted(rebuild.alias, "caught_up", caught_up))
        olds = [rebuild.old_index for rebuild in handle.job.rebuilds if rebuild.old_index]
        if handle.job.delete_old and olds:
            time.sleep(delete_grace_s)  # let searches that resolved the old index finish
            for old_index in olds:
                client.indices.delete(index=old_index, params={"ignore_unavailable": "true"})
        handle.apply(Advance(CATCH_UP))
    return handle.job
