"""Step 1: the export read (its summary and data files) and checked (its table, its age), the
job claimed, each route's new index and reindex alias made and the old indices' tombstones
carried, once (``reindex.prepare_indices``)."""

from __future__ import annotations

import time
from typing import Any

from syncer.commands import reindex
from syncer.commands.jobs import JobHandle, job_store, new_owner, start_job
from syncer.config import Config, TableConfig
from syncer.core.exports import (
    DataFile,
    ExportFormatError,
    ExportSummary,
    check_export_age,
    check_export_of_table,
)
from syncer.core.jobs import Job
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


def prepare_export(
    config: Config,
    sinks: Sinks,
    s3: Any,
    table_name: str,
    export_uri: str,
    *,
    owner: str | None = None,
    index: str | None = None,
) -> tuple[JobHandle, list[DataFile]]:
    """Step 1: the export checked (``read_checked_export``), its job claimed (or its stopped
    one resumed), its new indices (of every route, or only ``index``) and reindex aliases made
    and tombstones carried (the prepare phase, once)."""
    table = config.require_table(table_name)
    wanted = sorted(route.index for route in reindex.selected_routes(table, index))
    _, summary, files = read_checked_export(sinks, s3, table, export_uri)
    if summary.is_incremental:
        raise ExportFormatError(
            f"{export_uri} is an incremental export: a new index needs a full export "
            "(apply incremental exports to the live index with `syncer backfill`)"
        )
    owner = owner or new_owner()

    def plan() -> Job:
        return reindex.new_job(
            sinks,
            table,
            "export",
            owner,
            index,
            export_uri=export_uri,
            table_arn=summary.table_arn,
            export_time_ms=summary.export_time_ms,
            read_version=summary.read_version.to_meta(),
            item_count=summary.item_count,
            work_items=tuple(data_file.key for data_file in files),
        )

    def resumes(job: Job) -> str | None:
        if job.kind != "export" or job.export_uri != export_uri:
            source = job.export_uri or f"a scan of {job.segments} segments"
            return f"it loads {source}, this one {export_uri}"
        if sorted(job.targets) != wanted:
            return f"it rebuilds {sorted(job.targets)}, this one {wanted}"
        return None

    handle, _ = start_job(job_store(sinks), table.name, plan, resumes, owner)
    with handle.holding():
        reindex.prepare_indices(config, sinks, handle)
    return handle, files


def prepare_scan(
    config: Config,
    sinks: Sinks,
    table_name: str,
    segments: int,
    *,
    owner: str | None = None,
    index: str | None = None,
) -> JobHandle:
    """Step 1 of a table without PITR: the same indices (of every route, or only ``index``);
    the work items are scan segments."""
    if segments < 1:
        raise ConfigError(f"segments must be at least 1, not {segments}")
    table = config.require_table(table_name)
    reindex.selected_routes(table, index)  # an unknown index is refused before anything
    handle, _ = reindex.start_scan_job(sinks, table, segments, owner=owner, index=index)
    with handle.holding():
        reindex.prepare_indices(config, sinks, handle)
    return handle
