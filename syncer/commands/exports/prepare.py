"""Step 1: the export read (its summary and data files), each route's new index and reindex
alias made (``reindex.prepare``) and the old indices' tombstones carried, once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from syncer.commands import reindex
from syncer.commands.exports.job import ExportJob, _routed_shape, rebuild_state_path
from syncer.config import Config, TableConfig
from syncer.core.exports import (
    DataFile,
    ExportFormatError,
    ExportSummary,
    check_export_age,
    check_export_of_table,
)
from syncer.errors import ConfigError
from syncer.sinks.exports import ExportReader
from syncer.sinks.ports import Sinks


def s3_client() -> Any:
    """The S3 client of export reads: botocore's standard retries on top of the file's own."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3", config=BotoConfig(retries={"mode": "standard", "max_attempts": 3}, read_timeout=30)
    )


def read_export(s3: Any, export_uri: str) -> tuple[ExportReader, ExportSummary, list[DataFile]]:
    reader = ExportReader(s3, export_uri)
    summary = reader.summary()
    return reader, summary, reader.data_files(summary)


def read_checked_export(
    sinks: Sinks, s3: Any, table: TableConfig, export_uri: str
) -> tuple[ExportReader, ExportSummary, list[DataFile]]:
    """``read_export``, refused before anything is applied when the export is another table's
    or older than the tombstone retention (``syncer.core.exports``)."""
    reader, summary, files = read_export(s3, export_uri)
    table_arn = str(sinks.items.describe(table.name).get("TableArn") or "")
    check_export_of_table(summary, table.name, table_arn)
    check_export_age(summary, int(time.time() * 1000), reindex.TOMBSTONE_HORIZON_S)
    return reader, summary, files


def prepare_targets(
    config: Config,
    sinks: Sinks,
    table: TableConfig,
    segments: int,
    progress_path: Path,
    index: str | None = None,
) -> reindex.ReindexState:
    """Every route's new index and reindex alias (``reindex.prepare``; only ``index``'s when
    given), tombstones carried once."""
    client = sinks.search_admin
    key_types = sinks.items.key_schema(table.name)
    path = rebuild_state_path(progress_path)
    state = reindex.prepare(client, table, segments, path, index=index)
    for rebuild in state.rebuilds:
        if rebuild.tombstones_carried is None:
            rebuild.tombstones_carried = 0
            if rebuild.old_index:
                route = next(r for r in table.resolved_routes if r.index == rebuild.alias)
                rebuild.tombstones_carried = reindex.carry_tombstones(
                    sinks,
                    config,
                    table.route_table(route),
                    rebuild.old_index,
                    rebuild.new_index,
                    key_types,
                    shape=_routed_shape(table, route.index),
                )
            reindex.save_state(state, path)
    return state


def prepare_export(
    config: Config,
    sinks: Sinks,
    s3: Any,
    table_name: str,
    export_uri: str,
    progress_path: Path,
    index: str | None = None,
) -> tuple[ExportJob, list[DataFile]]:
    """Step 1: the new indices and reindex aliases (of every route, or only ``index``),
    tombstones carried, the files listed."""
    table = config.require_table(table_name)
    reindex.selected_routes(table, index)  # an unknown index is refused before anything
    _, summary, files = read_checked_export(sinks, s3, table, export_uri)
    if summary.is_incremental:
        raise ExportFormatError(
            f"{export_uri} is an incremental export: a new index needs a full export "
            "(apply incremental exports to the live index with `syncer backfill`)"
        )
    state = prepare_targets(config, sinks, table, 1, progress_path, index)
    job = ExportJob(
        table=table.name,
        export_uri=export_uri,
        targets=state.targets,
        old_indices={rebuild.alias: rebuild.old_index for rebuild in state.rebuilds},
        read_version=summary.read_version.to_meta(),
        item_count=summary.item_count,
        files=len(files),
        started_at=state.started_at,
    )
    return job, files


def prepare_scan(
    config: Config,
    sinks: Sinks,
    table_name: str,
    segments: int,
    progress_path: Path,
    index: str | None = None,
) -> ExportJob:
    """Step 1 of a table without PITR: the same indices; the work items are scan segments."""
    if segments < 1:
        raise ConfigError(f"segments must be at least 1, not {segments}")
    table = config.require_table(table_name)
    reindex.selected_routes(table, index)
    state = prepare_targets(config, sinks, table, segments, progress_path, index)
    olds = {rebuild.alias: rebuild.old_index for rebuild in state.rebuilds}
    return ExportJob(table.name, "", state.targets, olds, {}, 0, 0, segments, state.started_at)
