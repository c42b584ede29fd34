"""`syncer reindex` (a scan, in one process or in workers, or a DynamoDB export) and
`syncer backfill`: rebuilding an index from the table, or filling it in from an export."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from syncer.cli.app import CONFIG_HELP, command_sinks, load, main
from syncer.cli.progress import progress
from syncer.config import Config


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option(
    "--table", "table_name", help="Configured table to rebuild (required but with --status)."
)
@click.option(
    "--index",
    "index_name",
    help="Rebuild only this index of a routed table (default: every index of the table).",
)
@click.option("--segments", default=4, show_default=True, help="Parallel scan segments.")
@click.option(
    "--page-size",
    default=500,
    show_default=True,
    help="Items per scan page (with --export: lines per bulk page, 1000 unless given).",
)
@click.option(
    "--state-file",
    type=click.Path(),
    help="Deprecated and ignored: the progress lives in the job record (see --status).",
)
@click.option(
    "--delete-old/--keep-old",
    default=False,
    show_default=True,
    help="Delete the previous index after the swap (kept, it stays write-blocked).",
)
@click.option(
    "--delete-grace-s",
    default=60.0,
    show_default=True,
    help="Wait before deleting the old index, for searches in flight.",
)
@click.option(
    "--abandon",
    is_flag=True,
    help="Stop the table's rebuild job instead (fenced first), and drop its new index and alias.",
)
@click.option(
    "--status",
    is_flag=True,
    help="Show each table's rebuild job (or --table's): kind, phase, progress, owner, age, next step.",
)
@click.option(
    "--export",
    "export_uri",
    help="Load a DynamoDB full export instead of scanning: s3://... folder of manifest-summary.json.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Processes loading export files (or, without --export, scan segments) in parallel.",
)
def reindex(
    config_path: str | None,
    table_name: str,
    index_name: str | None,
    segments: int,
    page_size: int,
    state_file: str | None,
    delete_old: bool,
    delete_grace_s: float,
    abandon: bool,
    status: bool,
    export_uri: str | None,
    workers: int,
) -> None:
    """Rebuild a table's index (each route's, from one scan) with no downtime, then swap aliases.

    The stream keeps flowing: its changes also go to the new index while it fills, and a
    scanned item never overwrites a newer stream change. Its job record (in OpenSearch) keeps
    its phase and progress: run it again after a crash, from any machine, to resume; --status
    to see it; --abandon to drop it.

    Example: syncer reindex --table catalog --segments 8
    """
    import warnings

    from syncer.commands import reindex as rebuild
    from syncer.commands.reindex.state import check_option_combination

    check_option_combination(
        _given_options(click.get_current_context(), delete_old),
        abandon=abandon,
        export=export_uri is not None,
        workers=workers,
    )
    config = load(config_path)
    if status:
        _status(config, table_name)
        return
    if table_name is None:
        raise click.UsageError("Missing option '--table' (only --status goes without it).")
    table = config.require_table(table_name)
    if state_file is not None:
        warnings.warn(
            "--state-file is ignored: a rebuild's progress lives in its job record "
            "(`syncer reindex --status`)",
            DeprecationWarning,
            stacklevel=1,
        )
        click.echo("warning: --state-file is ignored (the job record keeps the progress)", err=True)
    if abandon:
        dropped = rebuild.abandon(command_sinks(config), table, index=index_name)
        job = f" (job {dropped.job} fenced)" if dropped.job else ""
        click.echo(
            f"{table_name}: reindex abandoned{job}; dropped "
            f"{', '.join(dropped.dropped) or 'nothing'}"
            + (
                f"; lifted the write block of {', '.join(dropped.unblocked)}"
                if dropped.unblocked
                else ""
            )
        )
        return
    # Checked before anything is created: a bad argument must leave no index, alias or state.
    rebuild.selected_routes(table, index_name)
    options = rebuild.ReindexOptions(
        segments=segments,
        page_size=page_size,
        index=index_name,
        delete_old=delete_old,
        delete_grace_s=delete_grace_s,
    )
    sinks = command_sinks(config)
    if export_uri is not None:
        export_page_size = page_size if "--page-size" in _given_options() else None
        _reindex_from_export(
            config, sinks, table_name, export_uri, workers, index_name, export_page_size
        )
        return
    if workers != 1:
        _reindex_scan_in_workers(
            config, sinks, table_name, segments, workers, index_name, page_size
        )
        return
    estimate = int(sinks.items.describe(table_name).get("ItemCount", 0))
    note = "DynamoDB's ItemCount, an estimate it refreshes about every six hours"
    with progress(estimate, f"reindex {table_name}", note) as advance:
        options = dataclasses.replace(
            options, on_progress=lambda page: advance(page.seen), on_resume=advance
        )
        result = rebuild.reindex_table(config, sinks, table_name, options=options)
    rate = result.indexed / result.seconds if result.seconds else 0.0
    swaps = "; ".join(
        f"alias {alias} -> {new}"
        + (f" (deleted {old})" if result.old_deleted else f" (kept {old}, write-blocked)")
        for alias, new, old in result.indices
    )
    click.echo(
        f"{table_name}: {result.indexed} documents in {result.seconds:.1f} s "
        f"({rate:.0f}/s); {result.already_newer} already newer from the stream; "
        f"{result.absent_tombstoned} absent from the scan, kept as tombstones; "
        f"{result.rejected} dead-lettered; {swaps}"
    )


# The reindex options as the command line names them, by click's parameter names.
_FLAGS = {
    "index_name": "--index",
    "segments": "--segments",
    "page_size": "--page-size",
    "delete_grace_s": "--delete-grace-s",
    "export_uri": "--export",
    "workers": "--workers",
}


def _given_options(ctx: click.Context | None = None, delete_old: bool = False) -> set[str]:
    """The options given on the command line (or in the environment), not left to defaults."""
    from click.core import ParameterSource

    ctx = ctx or click.get_current_context()
    given = {
        flag
        for name, flag in _FLAGS.items()
        if ctx.get_parameter_source(name)
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    return given | ({"--delete-old"} if delete_old else set())


def _reindex_from_export(
    config: Config,
    sinks: Any,
    table_name: str,
    export_uri: str,
    workers: int,
    index_name: str | None = None,
    page_size: int | None = None,
) -> None:
    from syncer.commands.exports import (
        DEFAULT_PAGE_SIZE,
        check_work_options,
        read_checked_export,
        reindex_from_export,
        s3_client,
    )

    check_work_options(workers, page_size or 1)
    s3 = s3_client()
    table = config.require_table(table_name)
    _, summary, _ = read_checked_export(sinks, s3, table, export_uri)
    with progress(summary.item_count, f"reindex {table_name} from export") as advance:
        result = reindex_from_export(
            config,
            sinks,
            table_name,
            export_uri,
            workers=workers,
            s3=s3,
            on_progress=advance,
            index=index_name,
            page_size=page_size if page_size is not None else DEFAULT_PAGE_SIZE,
        )
    rate = result.counts.items / result.seconds if result.seconds else 0.0
    swaps = "; ".join(f"alias {alias} -> {new} (kept {old})" for alias, new, old in result.indices)
    click.echo(
        f"{table_name}: {result.counts.items} items from {result.files} files "
        f"({result.files_resumed} loaded before) in {result.seconds:.1f} s ({rate:.0f}/s); "
        f"{result.counts.written} written, {result.counts.already_newer} already as new or newer "
        f"in the new index; {result.carried} carried from the old index, "
        f"{result.absent_tombstoned} tombstoned as absent from the export; "
        f"{result.counts.rejected} dead-lettered; {swaps}"
    )


def _reindex_scan_in_workers(
    config: Config,
    sinks: Any,
    table_name: str,
    segments: int,
    workers: int,
    index_name: str | None,
    page_size: int,
) -> None:
    from syncer.commands.exports import reindex_scan_in_workers

    with progress(0, f"reindex {table_name} in {workers} workers") as advance:
        result = reindex_scan_in_workers(
            config,
            sinks,
            table_name,
            segments=segments,
            workers=workers,
            on_progress=advance,
            index=index_name,
            page_size=page_size,
        )
    swaps = "; ".join(f"alias {alias} -> {new} (kept {old})" for alias, new, old in result.indices)
    click.echo(
        f"{table_name}: {result.counts.items} items from {result.files} segments "
        f"({result.files_resumed} scanned before) in {result.seconds:.1f} s; "
        f"{result.counts.written} written, {result.counts.already_newer} already newer from the "
        f"stream; {result.absent_tombstoned} absent from the scan, kept as tombstones; "
        f"{result.counts.rejected} dead-lettered; {swaps}"
    )


def _status(config: Config, table_name: str | None) -> None:
    """Each table's rebuild job, or ``table_name``'s: one line each, with what to do next."""
    import time

    from syncer.commands.jobs import alive, job_store

    if table_name is not None:
        config.require_table(table_name)
    sinks = command_sinks(config)
    jobs = [job for job in job_store(sinks).all() if table_name in (None, job.table)]
    if not jobs:
        click.echo(f"no rebuild job{f' of {table_name}' if table_name else ''}")
        return
    from syncer.core.jobs import describe

    now = time.time()
    for job in sorted(jobs, key=lambda job: job.table):
        click.echo(describe(job, now, alive(job, now)))


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--table", "table_name", required=True, help="Configured table to backfill.")
@click.option(
    "--export",
    "export_uri",
    required=True,
    help="A DynamoDB full or incremental export: s3://... folder of manifest-summary.json.",
)
@click.option(
    "--workers", default=1, show_default=True, help="Processes loading export files in parallel."
)
@click.option(
    "--state-file",
    type=click.Path(),
    help="Deprecated and ignored: the progress lives in the backfill's job record (see reindex --status).",
)
def backfill(
    config_path: str | None, table_name: str, export_uri: str, workers: int, state_file: str | None
) -> None:
    """Apply an export to the live index in place: never over a newer change, cache keys cleared.

    For a window the stream no longer holds (the trigger was off longer than its retention):
    take an incremental export of that window and backfill it (docs/onboarding.md).

    Example: syncer backfill --table catalog --export s3://bucket/prefix/AWSDynamoDB/0170...-ab12
    """
    from syncer.commands.backfill import backfill as run_backfill
    from syncer.commands.exports import check_work_options, read_checked_export, s3_client

    if state_file is not None:
        click.echo("warning: --state-file is ignored (the job record keeps the progress)", err=True)
    check_work_options(workers, 1)
    config = load(config_path)
    sinks = command_sinks(config)
    table = config.require_table(table_name)
    s3 = s3_client()
    _, summary, _ = read_checked_export(sinks, s3, table, export_uri)
    with progress(summary.item_count, f"backfill {table_name}") as advance:
        result = run_backfill(
            config,
            sinks,
            table_name,
            export_uri,
            workers=workers,
            s3=s3,
            on_progress=advance,
        )
    rate = result.counts.items / result.seconds if result.seconds else 0.0
    click.echo(
        f"{table_name}: {result.counts.items} items of a {result.export_type} from "
        f"{result.files} files ({result.files_resumed} loaded before) in {result.seconds:.1f} s "
        f"({rate:.0f}/s); {result.counts.written} written, {result.counts.already_newer} already "
        f"up to date (the index held this state or a newer one); {result.counts.rejected} "
        "dead-lettered"
    )
