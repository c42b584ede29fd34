"""`syncer run`: the local worker following the tables' DynamoDB streams."""

from __future__ import annotations

import click

from syncer.cli.app import CONFIG_HELP, load, main


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
    from syncer.runner.poller import PollOptions
    from syncer.runner.run import run_poller

    config = load(config_path)
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
