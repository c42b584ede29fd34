"""The indices a rebuild fills: each selected route's next versioned index and reindex alias,
named when the job is claimed (``plan_rebuilds``), made in its prepare phase
(``prepare_indices``), and dropped, after the job is fenced, by ``abandon``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from syncer.commands.jobs import JobHandle, job_store
from syncer.commands.reindex.swap import WRITE_BLOCK
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
from syncer.sinks.indices import create_versioned_index, versioned_index_name
from syncer.sinks.ports import Sinks
from syncer.sinks.search import reindex_alias

log = logging.getLogger("syncer.commands.reindex")


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


def plan_rebuilds(client: Any, table: TableConfig, routes: list[Route]) -> tuple[Rebuild, ...]:
    """Each route's next versioned index (after every one that exists) and the one it replaces.

    Only names: the job that records them is claimed first, so two rebuilds started together
    never both make (or fill) the same index."""
    rebuilds = []
    for route in routes:
        alias = route.index
        for running in _alias_indices(client, reindex_alias(alias)):
            raise SyncerError(
                f"{running} is behind {reindex_alias(alias)!r} but no running job of "
                f"{table.name!r} names it (a release before jobs left it?): run `syncer reindex "
                f"--table {table.name} --abandon` to drop it"
            )
        current = _alias_indices(client, alias)
        if len(current) > 1:
            raise ConfigError(f"alias {alias!r} points at several indices: {current}")
        existing = client.indices.get(index=f"{alias}-0*", params={"ignore_unavailable": "true"})
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
    client = sinks.search_admin
    key_types = sinks.items.key_schema(table.name)
    routes = {route.index: route for route in table.resolved_routes}
    for rebuild in job.rebuilds:
        view = table.route_table(routes[rebuild.alias])
        handle.refresh()  # an abandoned job makes nothing
        create_versioned_index(client, view, rebuild.new_index, with_alias=False)
        client.indices.put_alias(index=rebuild.new_index, name=reindex_alias(rebuild.alias))
        try:
            handle.refresh()  # abandoned meanwhile: --abandon dropped nothing of this yet
        except JobFencedError:
            if handle.abandoned():  # taken over, the new owner goes on with this index
                client.indices.delete(
                    index=rebuild.new_index, params={"ignore_unavailable": "true"}
                )
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
    client = sinks.search_admin
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
        serving = _alias_indices(client, route.index)
        for building in _alias_indices(client, reindex_alias(route.index)):
            if building in serving:
                raise SyncerError(
                    f"{building} is behind both {route.index!r} and its reindex alias; "
                    f"remove the alias {reindex_alias(route.index)!r} by hand"
                )
            client.indices.delete(index=building)
            dropped.append(building)
        for name in sorted(named - set(serving) - set(dropped)):
            if name.startswith(f"{route.index}-") and client.indices.exists(index=name):
                client.indices.delete(index=name)
                dropped.append(name)
        for name in serving:
            settings = client.indices.get_settings(index=name, name=WRITE_BLOCK)
            block = settings.get(name, {}).get("settings", {}).get("index", {}).get("blocks", {})
            if str(block.get("write", "false")).lower() == "true":
                client.indices.put_settings(index=name, body={WRITE_BLOCK: None})
                unblocked.append(name)
    return Abandoned(tuple(dropped), tuple(unblocked), fenced)
