"""The indices a reindex fills: each selected route's next versioned index and its reindex
alias, created or resumed from the state file (``prepare``), and dropped (``abandon``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer.commands.reindex.state import (
    DEFAULT_PAGE_SIZE,
    IndexRebuild,
    ReindexState,
    check_scan_arguments,
    load_state,
    save_state,
)
from syncer.commands.reindex.swap import WRITE_BLOCK
from syncer.config import Route, TableConfig
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


def _in_progress(client: Any, state: ReindexState, rebuild: IndexRebuild) -> bool:
    """Whether ``rebuild`` is still the reindex its alias serves (or already swapped to)."""
    if _alias_indices(client, reindex_alias(rebuild.alias)) == [rebuild.new_index]:
        return True
    return state.swapping and _alias_indices(client, rebuild.alias) == [rebuild.new_index]


def prepare(
    client: Any, table: TableConfig, segments: int, state_path: Path, *, index: str | None = None
) -> ReindexState:
    """Resume the reindex in ``state_path``, or create each route's next index and reindex alias.

    A state saved with segments < 1 (by a release that did not check them) scanned nothing:
    it resumes with ``segments``.
    """
    check_scan_arguments(segments, DEFAULT_PAGE_SIZE)
    routes = selected_routes(table, index)
    aliases = sorted(route.index for route in routes)
    state = load_state(state_path)
    if (
        state is not None
        and state.table == table.name
        and sorted(state.targets) == aliases
        and all(_in_progress(client, state, rebuild) for rebuild in state.rebuilds)
    ):
        log.info("resuming reindex of %s into %s", table.name, sorted(state.targets.values()))
        if state.segments < 1:
            log.warning(
                "the saved reindex of %s has segments=%d; scanning with %d segments",
                table.name,
                state.segments,
                segments,
            )
            state.segments, state.last_keys, state.done_segments = segments, {}, []
            save_state(state, state_path)
        return state
    for alias in aliases:
        running = _alias_indices(client, reindex_alias(alias))
        if running:
            raise SyncerError(
                f"a reindex of {table.name!r} into {running} is in progress but {state_path} "
                f"does not describe it; pass its --state-file, or run `syncer reindex --table "
                f"{table.name} --abandon` to drop it"
            )
    rebuilds = [_create_next_index(client, table.route_table(route)) for route in routes]
    state = ReindexState(table.name, segments, rebuilds)
    save_state(state, state_path)
    return state


def _create_next_index(client: Any, table: TableConfig) -> IndexRebuild:
    current = _alias_indices(client, table.index)
    if len(current) > 1:
        raise ConfigError(f"alias {table.index!r} points at several indices: {current}")
    old_index = current[0] if current else None
    existing = client.indices.get(index=f"{table.index}-0*", params={"ignore_unavailable": "true"})
    generation = max([_generation(name, table.index) for name in existing] + [0]) + 1
    new_index = versioned_index_name(table.index, generation)
    create_versioned_index(client, table, new_index, with_alias=False)
    client.indices.put_alias(index=new_index, name=reindex_alias(table.index))
    log.info("reindexing %s into %s (old: %s)", table.name, new_index, old_index)
    return IndexRebuild(table.index, new_index, old_index)


@dataclass(frozen=True)
class Abandoned:
    dropped: tuple[str, ...]  # the half-built indices deleted
    unblocked: tuple[str, ...]  # serving indices whose write block (from a swap) was lifted


def abandon(
    sinks: Sinks, table: TableConfig, state_path: Path, *, index: str | None = None
) -> Abandoned:
    """Drop a running reindex: its reindex aliases, the indices they point at, its state file.

    The indices the table's aliases serve are kept; a write block a swap that never finished
    left on one of them is lifted. Only indices behind a reindex alias are deleted.
    """
    client = sinks.search_admin
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
        for name in serving:
            settings = client.indices.get_settings(index=name, name=WRITE_BLOCK)
            block = settings.get(name, {}).get("settings", {}).get("index", {}).get("blocks", {})
            if str(block.get("write", "false")).lower() == "true":
                client.indices.put_settings(index=name, body={WRITE_BLOCK: None})
                unblocked.append(name)
    state_path.unlink(missing_ok=True)
    return Abandoned(tuple(dropped), tuple(unblocked))
