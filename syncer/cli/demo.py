"""`syncer demo`: the whole flow on the local stack (`make demo`)."""

from __future__ import annotations

import click

from syncer.cli.app import CONFIG_HELP, load, main


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

    run_demo(load(config_path), items, click.echo)
