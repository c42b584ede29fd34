"""`syncer deadletter list` and `syncer deadletter redrive`: dead-lettered records."""

from __future__ import annotations

import sys

import click

from syncer.cli.app import CONFIG_HELP, command_sinks, load, main


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

    config = load(config_path)
    entries = list_entries(config, command_sinks(config), limit)
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

    config = load(config_path)
    result = redrive(config, command_sinks(config), click.echo)
    click.echo(
        f"{result.entries} entries: {result.redriven} redriven, {result.rejected_again} rejected "
        f"again (new entry with the new reason), {result.failed_again} failed again (kept), "
        f"{result.unreadable} unreadable (kept as stored), {result.not_redrivable} not stream "
        "records (kept)"
        + (f", {result.not_deleted} redriven but not deleted" if result.not_deleted else "")
    )
    if not result.clean:
        sys.exit(1)
