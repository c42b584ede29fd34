"""The ``syncer`` command line: management commands around the same pipeline."""

from __future__ import annotations

import logging
import sys

import click

from syncer.config import Config, load_config
from syncer.errors import SyncerError

CONFIG_HELP = "Configuration file (default: $SYNCER_CONFIG, then ./syncer.toml)."


def _load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except SyncerError as error:
        raise click.ClickException(str(error)) from None


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """Keep OpenSearch and Redis in step with DynamoDB Streams."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # opensearch-py logs every expected 404 as a warning; syncer logs what matters itself.
    for noisy in ("opensearch", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--dry-run", is_flag=True, help="Only print what would change.")
def setup(config_path: str | None, dry_run: bool) -> None:
    """Apply the index templates and create each table's first index behind its alias.

    Idempotent: what already exists is left alone.

    Example: syncer setup --config syncer.toml
    """
    from syncer.indices import apply_setup, plan_setup
    from syncer.search import make_client

    config = _load(config_path)
    client = make_client(config.opensearch)
    try:
        for table in config.tables:
            steps = plan_setup(client, table)
            for step in steps:
                verb = "would" if dry_run else "will"
                click.echo(f"{table.name}: {verb} {step.action} {step.target}")
            if not dry_run:
                apply_setup(client, table, steps)
            if not steps:
                click.echo(f"{table.name}: up to date (alias {table.index})")
    except SyncerError as error:
        raise click.ClickException(str(error)) from None


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option("--items", default=20, show_default=True, help="How many catalog items to write.")
def demo(config_path: str | None, items: int) -> None:
    """Run the whole flow on the local stack and print what search and the cache show.

    Creates the demo table with a stream in the DynamoDB emulator, writes, moves and deletes
    items, delivers the stream to the Lambda handler, then queries OpenSearch and Redis.
    Needs the services of `scripts/services.sh up`.
    """
    from syncer.demo import run_demo

    config = _load(config_path)
    try:
        run_demo(config, items, click.echo)
    except SyncerError as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    main()
