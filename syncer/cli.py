"""The ``syncer`` command line: management commands around the same pipeline."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from syncer.config import Config, load_config
from syncer.errors import SyncerError
from syncer.sinks.secrets import REDACTOR

CONFIG_HELP = "Configuration file (default: $SYNCER_CONFIG, then ./syncer.toml)."


def _load(config_path: str | None) -> Config:
    # A ConfigError goes up to _SyncerGroup, which redacts it like every other error.
    return load_config(config_path)


class _SyncerGroup(click.Group):
    """Turns any error of a command into one redacted ``Error:`` line instead of a traceback.

    The one handler for every command (subgroups included, as they run inside this ``invoke``):
    commands let a ``SyncerError`` go up rather than catching it, so no message skips redaction.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except SyncerError as error:
            raise click.ClickException(REDACTOR(str(error))) from None
        except Exception as error:
            logging.getLogger("syncer.cli").debug("command failed", exc_info=True)
            raise click.ClickException(
                REDACTOR(f"{type(error).__name__}: {error} (run with -v for details)")
            ) from None


@click.group(cls=_SyncerGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Text for a terminal, JSON lines for log collectors.",
)
def main(verbose: bool, log_format: str) -> None:
    """Keep OpenSearch and Redis in step with DynamoDB Streams."""
    from syncer.obs.logs import configure_logging

    configure_logging(
        json_lines=log_format == "json", level=logging.DEBUG if verbose else logging.INFO
    )


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--dry-run", is_flag=True, help="Only print what would change.")
def setup(config_path: str | None, dry_run: bool) -> None:
    """Apply the index templates and create each index (every route's) behind its alias.

    Idempotent: what already exists is left alone. --dry-run also prints each routed table's
    routing table: which items go to which index, in the order routes are tried.

    Example: syncer setup --config syncer.toml
    """
    from syncer.core.routes import routing_table
    from syncer.sinks.build import opensearch_client
    from syncer.sinks.indices import apply_setup, plan_setup
    from syncer.sinks.resilience import Downstream, Guarded

    config = _load(config_path)
    client = Guarded(opensearch_client(config), Downstream("opensearch", config.resilience))
    for table in config.tables:
        if dry_run and table.routes:
            click.echo(f"{table.name}: routes, first match wins")
            for line in routing_table(table):
                click.echo(f"  {line}")
        for route in table.resolved_routes:
            view = table.route_table(route)
            steps = plan_setup(client, view)
            for step in steps:
                verb = "would" if dry_run else "will"
                click.echo(f"{table.name}: {verb} {step.action} {step.target}")
            if not dry_run:
                apply_setup(client, view, steps)
            if not steps:
                click.echo(f"{table.name}: up to date (alias {view.index})")


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--items", default=20, show_default=True, help="How many catalog items to write.")
def demo(config_path: str | None, items: int) -> None:
    """Run the whole flow on the local stack and print what search and the cache show.

    Creates a routed single-table catalog with a stream in the DynamoDB emulator, writes,
    moves, hides and deletes items, follows the stream with the `syncer run` worker (the same
    pipeline as Lambda), then queries each index and Redis.
    Needs the services of `scripts/services.sh up`.
    """
    from syncer.demo import run_demo

    run_demo(_load(config_path), items, click.echo)


def _sinks(config: Config) -> Any:
    """The command's clients, closed when the command ends."""
    from syncer.sinks.build import build_sinks

    sinks = build_sinks(config)
    click.get_current_context().call_on_close(sinks.close)
    return sinks


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--table", "table_name", required=True, help="Configured table to rebuild.")
@click.option(
    "--index",
    "index_name",
    help="Rebuild only this index of a routed table (default: every index of the table).",
)
@click.option("--segments", default=4, show_default=True, help="Parallel scan segments.")
@click.option("--page-size", default=500, show_default=True, help="Items per scan page.")
@click.option(
    "--state-file",
    type=click.Path(),
    help="Progress file for resuming (default: .syncer-reindex-TABLE.json).",
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
    help="Drop the running reindex instead: its new index, its alias and its state file.",
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
    export_uri: str | None,
    workers: int,
) -> None:
    """Rebuild a table's index (each route's, from one scan) with no downtime, then swap aliases.

    The stream keeps flowing: its changes also go to the new index while it fills, and a
    scanned item never overwrites a newer stream change. Run it again after a crash to resume,
    or with --abandon to drop it.

    Example: syncer reindex --table catalog --segments 8
    """
    from pathlib import Path

    from syncer.commands import reindex as rebuild

    config = _load(config_path)
    table = config.require_table(table_name)
    state_path = Path(state_file) if state_file else rebuild.default_state_path(table_name)
    if abandon:
        dropped = rebuild.abandon(_sinks(config), table, state_path, index=index_name)
        click.echo(
            f"{table_name}: reindex abandoned; dropped {', '.join(dropped.dropped) or 'nothing'}"
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
        state_path=state_path,
        index=index_name,
        delete_old=delete_old,
        delete_grace_s=delete_grace_s,
    )
    sinks = _sinks(config)
    if export_uri is not None:
        if index_name is not None or delete_old:
            raise click.UsageError(
                "--export rebuilds every index of the table and keeps the old ones: "
                "--index and --delete-old do not apply"
            )
        _reindex_from_export(config, sinks, table_name, export_uri, workers, state_file)
        return
    if workers != 1:
        _reindex_scan_in_workers(config, sinks, table_name, segments, workers, state_file)
        return
    description = sinks.dynamodb_guard.call_with_retry(
        sinks.dynamodb.describe_table, TableName=table_name
    )
    estimate = int(description["Table"].get("ItemCount", 0))
    note = "DynamoDB's ItemCount, an estimate it refreshes about every six hours"
    with _progress(estimate, f"reindex {table_name}", note) as advance:
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


def _reindex_from_export(
    config: Config,
    sinks: Any,
    table_name: str,
    export_uri: str,
    workers: int,
    state_file: str | None,
) -> None:
    from pathlib import Path

    from syncer.commands.exports import (
        check_work_options,
        read_export,
        reindex_from_export,
        s3_client,
    )

    check_work_options(workers, 1)
    s3 = s3_client()
    _, summary, _ = read_export(s3, export_uri)
    with _progress(summary.item_count, f"reindex {table_name} from export") as advance:
        result = reindex_from_export(
            config,
            sinks,
            table_name,
            export_uri,
            workers=workers,
            progress_path=Path(state_file) if state_file else None,
            s3=s3,
            on_progress=advance,
        )
    rate = result.counts.items / result.seconds if result.seconds else 0.0
    swaps = "; ".join(f"alias {alias} -> {new} (kept {old})" for alias, new, old in result.indices)
    click.echo(
        f"{table_name}: {result.counts.items} items from {result.files} files "
        f"({result.files_resumed} loaded before) in {result.seconds:.1f} s ({rate:.0f}/s); "
        f"{result.carried} carried from the old index, {result.absent_tombstoned} tombstoned "
        f"as absent from the export; {result.counts.rejected} dead-lettered; {swaps}"
    )


def _reindex_scan_in_workers(
    config: Config,
    sinks: Any,
    table_name: str,
    segments: int,
    workers: int,
    state_file: str | None,
) -> None:
    from pathlib import Path

    from syncer.commands.exports import reindex_scan_in_workers

    with _progress(0, f"reindex {table_name} in {workers} workers") as advance:
        result = reindex_scan_in_workers(
            config,
            sinks,
            table_name,
            segments=segments,
            workers=workers,
            progress_path=Path(state_file) if state_file else None,
            on_progress=advance,
        )
    swaps = "; ".join(f"alias {alias} -> {new} (kept {old})" for alias, new, old in result.indices)
    click.echo(
        f"{table_name}: {result.counts.items} items from {result.files} segments in "
        f"{result.seconds:.1f} s; {result.counts.rejected} dead-lettered; {swaps}"
    )


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
    help="Progress file for resuming (default: .syncer-backfill-TABLE.json).",
)
def backfill(
    config_path: str | None, table_name: str, export_uri: str, workers: int, state_file: str | None
) -> None:
    """Apply an export to the live index in place: never over a newer change, cache keys cleared.

    For a window the stream no longer holds (the trigger was off longer than its retention):
    take an incremental export of that window and backfill it (docs/onboarding.md).

    Example: syncer backfill --table catalog --export s3://bucket/prefix/AWSDynamoDB/0170...-ab12
    """
    from pathlib import Path

    from syncer.commands.backfill import backfill as run_backfill
    from syncer.commands.exports import check_work_options, read_export, s3_client

    check_work_options(workers, 1)
    config = _load(config_path)
    sinks = _sinks(config)
    config.require_table(table_name)
    s3 = s3_client()
    _, summary, _ = read_export(s3, export_uri)
    with _progress(summary.item_count, f"backfill {table_name}") as advance:
        result = run_backfill(
            config,
            sinks,
            table_name,
            export_uri,
            workers=workers,
            progress_path=Path(state_file) if state_file else None,
            s3=s3,
            on_progress=advance,
        )
    rate = result.counts.items / result.seconds if result.seconds else 0.0
    click.echo(
        f"{table_name}: {result.counts.items} items of a {result.export_type} from "
        f"{result.files} files ({result.files_resumed} loaded before) in {result.seconds:.1f} s "
        f"({rate:.0f}/s); {result.counts.written} written, {result.counts.already_newer} already "
        f"newer; {result.counts.rejected} dead-lettered"
    )


class _Progress:
    """Items done of the total, rate and ETA: a bar on a terminal, a log line every 5 s otherwise.

    ``total_note`` says where the total comes from when it is an estimate.
    """

    def __init__(self, total: int, label: str, total_note: str = "") -> None:
        self.total, self.label, self.done = total, label, 0
        self.total_note = f" ({total_note})" if total_note else ""
        self.started = self.last_log = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = click.progressbar(
                length=max(total, 1),
                label=f"{label}, ~{total} items{self.total_note}\n",
                file=sys.stderr,
                show_eta=True,
                show_percent=True,
                show_pos=True,
                item_show_func=lambda rate: None if rate is None else f"{rate:.0f}/s",
            )

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is not None:
            self.bar.__enter__()
        return self.advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def rate(self, now: float) -> float:
        return self.done / max(now - self.started, 1e-9)

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.bar is not None:
            self.bar.length = max(self.bar.length, self.done)  # the estimate was short
            self.bar.update(count, current_item=self.rate(now))
            return
        if now - self.last_log >= 5:
            self.last_log = now
            rate = self.rate(now)
            eta = (self.total - self.done) / rate if rate and self.total > self.done else 0
            logging.getLogger("syncer.progress").info(
                "%s: %d of ~%d items%s, %.0f/s, ETA %.0f s",
                self.label,
                self.done,
                self.total,
                self.total_note,
                rate,
                eta,
            )


def _progress(total: int, label: str, total_note: str = "") -> _Progress:
    return _Progress(total, label, total_note)


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--table", "table_name", required=True, help="Configured table to check.")
@click.option(
    "--sample",
    type=click.IntRange(1, 10_000),
    help="Check about N (1 to 10,000) random items and documents instead of everything.",
)
@click.option("--repair", is_flag=True, help="Fix what differs, with the ordering rules in force.")
def verify(config_path: str | None, table_name: str, sample: int | None, repair: bool) -> None:
    """Compare a table with its index: missing, ghost and differing documents.

    Exits 1 when drift was found (also when --repair fixed it, so scripts notice).

    Example: syncer verify --table catalog --sample 1000
    """
    from syncer.commands.verify import verify_table

    config = _load(config_path)
    report = verify_table(config, _sinks(config), table_name, sample, repair)
    click.echo(
        f"{table_name}: {report.checked_items} items and {report.checked_documents} documents checked; "
        f"{len(report.missing)} missing, {len(report.ghost)} ghost, {len(report.differing)} differing, "
        f"{len(report.stray)} stray"
    )
    for kind, ids in (
        ("missing", report.missing),
        ("ghost", report.ghost),
        ("differing", report.differing),
        ("stray", [f"{index}/{doc_id}" for index, doc_id in report.stray]),
    ):
        for doc_id in ids[:10]:
            click.echo(f"  {kind}: {doc_id}")
        if len(ids) > 10:
            click.echo(f"  ... and {len(ids) - 10} more {kind}")
    if repair:
        click.echo(
            f"repaired {report.repaired}; {report.left_to_stream} changed meanwhile, left to the stream"
        )
        for failure in report.unrepaired[:10]:
            click.echo(f"  not repaired: {failure}")
    if report.unverifiable:
        click.echo(
            f"{report.unverifiable} sampled documents with hashed long ids could not be checked "
            "for ghosts; a whole verify (without --sample) checks them"
        )
    if report.drift:
        sys.exit(1)


@main.command("purge-tombstones")
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--table", "table_name", required=True, help="Configured table whose index to purge.")
@click.option(
    "--older-than",
    default="15d",
    show_default=True,
    help="Purge tombstones of deletes older than this (s, m, h or d; at least 24h).",
)
@click.option("--dry-run", is_flag=True, help="Only count the tombstones that would go.")
def purge_tombstones(
    config_path: str | None, table_name: str, older_than: str, dry_run: bool
) -> None:
    """Delete tombstones (deleted items' markers) too old for any replay to need.

    A tombstone stops an older change, delivered late, from bringing a deleted item back. Keep
    them longer than the stream's retention (24 h) plus the longest time a dead letter may wait
    before `syncer deadletter redrive`: the default, 15 days, covers the 14 days the deployed
    dead-letter queue keeps messages. Refused while a reindex of the table is running.

    Example: syncer purge-tombstones --table catalog --older-than 15d --dry-run
    """
    from syncer.commands.purge import parse_age
    from syncer.commands.purge import purge_tombstones as purge

    try:
        age_s = parse_age(older_than)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--older-than") from None
    config = _load(config_path)
    table = config.require_table(table_name)
    sinks = _sinks(config)
    with contextlib.ExitStack() as stack:
        bars: list[_Progress] = []  # made on the first report, when the total is known

        def on_progress(done: int, total: int) -> None:
            if not bars:
                bars.append(_progress(total, "purging tombstones"))
                stack.enter_context(bars[0])
            bars[0].advance(done - bars[0].done)

        reports = [
            purge(
                sinks.search,
                table.route_table(route),  # a routed table: each route's index in turn
                age_s,
                dry_run=dry_run,
                on_progress=on_progress,
            )
            for route in table.resolved_routes
        ]
    failures = [failure for report in reports for failure in report.failures]
    for report in reports:
        where = ", ".join(report.indices)
        if dry_run:
            click.echo(
                f"{table_name}: {report.matched} tombstones older than {older_than} in {where}"
            )
            continue
        click.echo(
            f"{table_name}: deleted {report.deleted} of {report.matched} tombstones older than "
            f"{older_than} in {where}; {report.conflicts} changed meanwhile and were kept"
        )
    if failures:
        for failure in failures[:10]:
            click.echo(f"  failed: {failure}", err=True)
        raise click.ClickException(f"{len(failures)} tombstones could not be deleted")


@main.group()
def deadletter() -> None:
    """Inspect and redrive dead-lettered records (file or SQS)."""


@deadletter.command("list")
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--limit", default=50, show_default=True, help="How many entries to show.")
def deadletter_list(config_path: str | None, limit: int) -> None:
    """Show dead-lettered records, oldest first: time, table, sequence number, error.

    Example: syncer deadletter list --limit 20
    """
    from syncer.commands.redrive import list_entries

    config = _load(config_path)
    entries = list_entries(config, _sinks(config), limit)
    for entry in entries:
        error = entry.get("error") or {}
        click.echo(
            f"{entry.get('time', '?')}  {entry.get('table') or '?'}  {entry.get('sequence_number') or '-'}  "
            f"{error.get('class', '?')}: {str(error.get('message', ''))[:200]}"
        )
    click.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} shown")


@deadletter.command("redrive")
@click.option("--config", "config_path", help=CONFIG_HELP)
def deadletter_redrive(config_path: str | None) -> None:
    """Send dead-lettered records through the pipeline again; older ones never overwrite newer state.

    Exits 1 when any entry was rejected again, failed again or could not be read.

    Example: syncer deadletter redrive
    """
    from syncer.commands.redrive import redrive

    config = _load(config_path)
    result = redrive(config, _sinks(config), click.echo)
    click.echo(
        f"{result.entries} entries: {result.redriven} redriven, {result.rejected_again} rejected "
        f"again (new entry with the new reason), {result.failed_again} failed again (kept), "
        f"{result.unreadable} unreadable (kept as stored), {result.not_redrivable} not stream "
        "records (kept)"
        + (f", {result.not_deleted} redriven but not deleted" if result.not_deleted else "")
    )
    if not result.clean:
        sys.exit(1)


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="A configured table to follow (repeatable; default: every configured table).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Records per process_batch call at most (Lambda's BatchSize).",
)
@click.option(
    "--batching-window-s",
    type=click.FloatRange(0, 300),
    default=0.0,
    show_default=True,
    help="Gather records up to this long or to the batch size; 0 sends each read at once.",
)
@click.option(
    "--idle-sleep-s",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Pause of a shard after a read that returned no records.",
)
@click.option(
    "--checkpoint-file",
    help="Keep checkpoints in this file (overrides [checkpoints] of the configuration).",
)
@click.option("--once", is_flag=True, help="Stop when every shard is caught up.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=9464,
    show_default=True,
    help="Serve Prometheus /metrics and /healthz on 127.0.0.1 at this port; 0 turns it off.",
)
def run(
    config_path: str | None,
    tables: tuple[str, ...],
    batch_size: int,
    batching_window_s: float,
    idle_sleep_s: float,
    checkpoint_file: str | None,
    once: bool,
    metrics_port: int,
) -> None:
    """Follow the tables' DynamoDB streams and keep OpenSearch and Redis in step (outside Lambda).

    Starts at each shard's checkpoint, or at TRIM_HORIZON without one; saves a checkpoint only
    after its records are handled. SIGINT/SIGTERM finish the current batch and exit 0.

    Example: syncer run --config syncer.toml --once
    """
    from syncer.runner.poller import PollOptions, run_poller

    config = _load(config_path)
    options = PollOptions(
        batch_size=batch_size,
        batching_window_s=batching_window_s,
        idle_sleep_s=idle_sleep_s,
        once=once,
    )
    run_poller(
        config,
        options,
        tables=tables,
        checkpoint_file=checkpoint_file,
        handle_signals=True,
        metrics_port=metrics_port or None,
    )


if __name__ == "__main__":
    main()
