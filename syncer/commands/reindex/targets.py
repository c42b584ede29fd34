"""The indices a rebuild fills: each selected route's next versioned index and reindex alias,
named when the job is claimed (``plan_rebuilds``), made in its prepare phase
(``prepare_indices``), and dropped, after the job is fenced, by ``abandon``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from syncer.commands.jobs import JobHandle, job_store
from syncer.commands.reindex.swap import admin_port
from syncer.config import Config, Route, TableConfig
from syncer.core.jobs import (
    PREPARE,
    Abandon,
    Advance,
    Counted,
    JobFencedError,
    JobTransitionError,
    Rebuild,
)
from syncer.errors import ConfigError, SyncerError
from syncer.sinks.indices import versioned_index_name
from syncer.sinks.ports import SearchAdmin, Sinks
from syncer.sinks.search import reindex_alias

log = logging.getLogger("syncer.commands.reindex")


def _generation(index: str, alias: str) -> int:
    suffix = index[len(alias) + 1 :]
    return int(suffix) if index.startswith(f"{alias}-") and suffix.isdigit() else 0


def selected_routes(table: TableConfig, index: str | None = None) -> list[Route]:
    """The routes a reindex rebuilds: every one of the table's, or the one writing ``index``."""
    routes = [route for route in table.resolved_routes if index in (None, route.index)]
    if not routes:
        indices = ", ".join(route.index for route in table.resolved_routes)
        raise ConfigError(f"table {table.name!r} has no index {index!r} (its indices: {indices})")
    return routes


def plan_rebuilds(
    admin: SearchAdmin, table: TableConfig, routes: list[Route]
) -> tuple[Rebuild, ...]:
    """Each route's next versioned index (after every one that exists) and the one it replaces.

    Only names: the job that records them is claimed first, so two rebuilds started together
    never both make (or fill) the same index."""
    admin = admin_port(admin)  # a raw client (before 0.2): wrapped, with a warning
    rebuilds = []
    for route in routes:
        alias = route.index
        for running in admin.indices_of(reindex_alias(alias)):
            raise SyncerError(
                f"{running} is behind {reindex_alias(alias)!r} but no running job of "
                f"{table.name!r} names it (a release before jobs left it?): run `syncer reindex "
                f"--table {table.name} --abandon` to drop it"
            )
        current = admin.indices_of(alias)
        if len(current) > 1:
            raise ConfigError(f"alias {alias!r} points at several indices: {current}")
        existing = admin.indices_matching(f"{alias}-0*")
        generation = max([_generation(name, alias) for name in existing] + [0]) + 1
        old = current[0] if current else None
        rebuilds.append(Rebuild(alias, versioned_index_name(alias, generation), old))
    return tuple(rebuilds)


def prepare_indices(config: Config, sinks: Sinks, handle: JobHandle) -> None:
    """The prepare phase, safe to run again: each new index and its reindex alias made (an
    existing one is this job's, named when it was claimed), the old index's young tombstones
    carried once, then the job moves to ``load``."""
    from syncer.commands.reindex.settle import carry_tombstones
    from syncer.commands.reindex.writes import routed_read

    job = handle.job
    if job.phase != PREPARE:
        return
    table = config.require_table(job.table)
    admin = sinks.admin
    key_types = sinks.items.key_schema(table.name)
    routes = {route.index: route for route in table.resolved_routes}
    for rebuild in job.rebuilds:
        handle.refresh()  # an abandoned job makes nothing
        admin.create_index(rebuild.new_index)  # made by an earlier run of this job: kept
        admin.put_alias(rebuild.new_index, reindex_alias(rebuild.alias))
        try:
            handle.refresh()  # abandoned meanwhile: --abandon dropped nothing of this yet
        except JobFencedError:
            if handle.abandoned():  # taken over, the new owner goes on with this index
                admin.delete_index(rebuild.new_index)
            raise
        log.info(
            "reindexing %s into %s (old: %s)", table.name, rebuild.new_index, rebuild.old_index
        )
    for rebuild in handle.job.rebuilds:
        if rebuild.tombstones_carried is None:
            carried = 0
            if rebuild.old_index:
                route = routes[rebuild.alias]
                carried = carry_tombstones(
                    sinks,
                    config,
                    table.route_table(route),
                    rebuild.old_index,
                    reindex_alias(rebuild.alias),
                    key_types,
                    shape=routed_read(table, route),
                )
            handle.apply(Counted(rebuild.alias, "tombstones_carried", carried))
    handle.apply(Advance(PREPARE))


@dataclass(frozen=True)
class Abandoned:
    dropped: tuple[str, ...]  # the half-built indices deleted
    unblocked: tuple[str, ...]  # serving indices whose write block (from a swap) was lifted
    job: str = ""  # the job fenced, if the table had one running


def abandon(
    sinks: Sinks, table: TableConfig, state_path: object = None, *, index: str | None = None
) -> Abandoned:
    """Fence the table's running job first (its steps change nothing from then on), then drop
    its reindex aliases and the indices they point at.

    The indices the table's aliases serve are kept; a write block a swap that never finished
    left on one of them is lifted. Only indices behind a reindex alias are deleted. A job
    that already swapped (its catch-up left) is refused: rerun it to finish instead.
    """
    import getpass
    import socket

    del state_path  # rebuild state lives in the job record (kept for callers of 0.x)
    admin = sinks.admin
    fenced = ""
    named: set[str] = set()  # the job's new indices, made or not (a prepare may have died)
    stored = job_store(sinks).get(table.name)
    if stored is not None and stored.job.phase not in ("done", "abandoned"):
        who = f"{getpass.getuser()}@{socket.gethostname()}"

        def change(current: Any) -> Any:
            from syncer.core.jobs import step

            if current is None:
                raise JobTransitionError(f"the job of {table.name!r} disappeared")
            return step(current.job, Abandon(who))

        fenced_job = job_store(sinks).update(table.name, change).job
        fenced = fenced_job.id
        named = {rebuild.new_index for rebuild in fenced_job.rebuilds}
    dropped: list[str] = []
    unblocked: list[str] = []
    for route in selected_routes(table, index):
        serving = admin.indices_of(route.index)
        for building in admin.indices_of(reindex_alias(route.index)):
            if building in serving:
                raise SyncerError(
                    f"{building} is behind both {route.index!r} and its reindex alias; "
                    f"remove the alias {reindex_alias(route.index)!r} by hand"
                )
            admin.delete_index(building)
            dropped.append(building)
        for name in sorted(named - set(serving) - set(dropped)):
            if name.startswith(f"{route.index}-") and admin.index_exists(name):
                admin.delete_index(name)
                dropped.append(name)
        for name in serving:
            if admin.write_blocked(name):
                admin.set_write_block(name, False)
                unblocked.append(name)
    return Abandoned(tuple(dropped), tuple(unblocked), fenced)
