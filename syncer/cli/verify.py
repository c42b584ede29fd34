"""`syncer verify`: a table compared with its index, drift listed and optionally repaired."""

from __future__ import annotations

import sys

import click

from syncer.cli.app import CONFIG_HELP, command_sinks, load, main


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

    config = load(config_path)
    report = verify_table(config, command_sinks(config), table_name, sample, repair)
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
