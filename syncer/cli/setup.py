"""`syncer setup`: index templates, and each route's index behind its alias."""

from __future__ import annotations

import click

from syncer.cli.app import CONFIG_HELP, load, main


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

    config = load(config_path)
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
