"""A rebuild's last phases, the same for a scan, an export and the state machine: settle,
block, swap, catch-up, done; each entered by a fenced conditional write on the job, each safe
to run again (docs/ordering.md, "The rebuild job")."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from syncer.commands.jobs import JobHandle
from syncer.commands.reindex.writes import routed_read
from syncer.config import Config
from syncer.config.names import REINDEXING_SUFFIX
from syncer.core.jobs import (
    BLOCK,
    CATCH_UP,
    SETTLE,
    SWAP,
    Advance,
    Counted,
    Job,
    JobFencedError,
    Rebuild,
)
from syncer.sinks.ports import SearchAdmin, Sinks

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
    admin = sinks.admin
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
            with _unblocked_if_fenced(handle, admin, rebuild.old_index):
                reindex.block_writes(admin, rebuild.old_index)
        handle.apply(Advance(BLOCK))
    if handle.job.phase == SWAP:
        for rebuild in handle.job.rebuilds:
            handle.refresh()  # the fence, checked right before each swap
            if admin.indices_of(rebuild.alias) != [rebuild.new_index]:
                view = table.route_table(routes[rebuild.alias])
                with _unblocked_if_fenced(handle, admin, rebuild.old_index):
                    reindex.swap_alias(admin, view, rebuild.new_index, rebuild.old_index)
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
                        shape=routed_read(table, route),
                    )
                handle.apply(Counted(rebuild.alias, "caught_up", caught_up))
        olds = [rebuild.old_index for rebuild in handle.job.rebuilds if rebuild.old_index]
        if handle.job.delete_old and olds:
            time.sleep(delete_grace_s)  # let searches that resolved the old index finish
            for old_index in olds:
                admin.delete_index(old_index)
        handle.apply(Advance(CATCH_UP))
    return handle.job


@contextlib.contextmanager
def _unblocked_if_fenced(
    handle: JobHandle, admin: SearchAdmin, old_index: str | None
) -> Iterator[None]:
    """Check the fence again after a block (or a swap, which blocks first): an ``--abandon``
    that ran between the check before and the block lifted the blocks before this one landed,
    so the old index, still serving, would stay blocked. Abandoned, the block is lifted here."""
    try:
        yield
    finally:
        try:
            handle.refresh()
        except JobFencedError:
            if handle.abandoned():  # a new owner of a job taken over blocks it itself
                _lift_block_if_serving(admin, old_index)
            raise


def _lift_block_if_serving(admin: SearchAdmin, old_index: str | None) -> None:
    """Lift the write block of ``old_index`` unless an alias moved off it (a done swap)."""
    if not old_index:
        return
    if any(not name.endswith(REINDEXING_SUFFIX) for name in admin.aliases_of(old_index)):
        admin.set_write_block(old_index, False)
