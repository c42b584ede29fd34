"""`syncer purge-tombstones`: deleted items' markers too old for any replay to need."""

from __future__ import annotations

import contextlib

import click

from syncer.cli.app import CONFIG_HELP, command_sinks, load, main
from syncer.cli.progress import Progress, progress


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
    config = load(config_path)
    table = config.require_table(table_name)
    sinks = command_sinks(config)
    with contextlib.ExitStack() as stack:
        bars: list[Progress] = []  # made on the first report, when the total is known

        def on_progress(done: int, total: int) -> None:
            if not bars:
                bars.append(progress(total, "purging tombstones"))
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
