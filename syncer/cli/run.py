"""`syncer run`: the local worker following the tables' DynamoDB or Kinesis streams, or replaying a
window of a Kinesis stream."""

from __future__ import annotations

import datetime as dt

import click

from syncer.cli.app import CONFIG_HELP, load, main
from syncer.runner.window import DEFAULT_UNTIL_MARGIN_S, TIME_HELP


@main.command()
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="A configured table to follow (repeatable; default: every configured table, or none "
    "when --kinesis-stream is given). A table with kinesis_stream set is followed through it.",
)
@click.option(
    "--kinesis-stream",
    "kinesis_streams",
    multiple=True,
    metavar="NAME_OR_ARN",
    help="A Kinesis stream carrying the tables' changes (Kinesis Data Streams for DynamoDB) "
    "to follow (repeatable); each record's table is its tableName.",
)
@click.option(
    "--from",
    "from_time",
    metavar="TIME",
    help="Replay a Kinesis stream from TIME (AT_TIMESTAMP), then exit; keeps checkpoints of its "
    f"own. TIME: {TIME_HELP}.",
)
@click.option(
    "--until",
    "until_time",
    metavar="TIME",
    help="With --from: the end of the replayed window (default: now).",
)
@click.option(
    "--until-margin-s",
    type=click.FloatRange(min=0),
    default=DEFAULT_UNTIL_MARGIN_S,
    show_default=True,
    help="With --from: read records that reached Kinesis up to this long after --until "
    "(changes delivered late).",
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
    kinesis_streams: tuple[str, ...],
    from_time: str | None,
    until_time: str | None,
    until_margin_s: float,
    batch_size: int,
    batching_window_s: float,
    idle_sleep_s: float,
    checkpoint_file: str | None,
    once: bool,
    metrics_port: int,
) -> None:
    """Follow the tables' streams and keep OpenSearch and Redis in step (outside Lambda).

    Each table's DynamoDB stream, or the Kinesis stream its kinesis_stream names. Starts at each
    shard's checkpoint, or at TRIM_HORIZON without one; saves a checkpoint only after its records
    are handled. SIGINT/SIGTERM finish the current batch and exit 0.

    --from TIME [--until TIME] replays a window of a Kinesis stream instead: harmless, since an
    older change never replaces a newer one; a stopped replay resumes when run again with the
    same times.

    Examples: syncer run --config syncer.toml --once;
    syncer run --kinesis-stream catalog-changes --from 2026-12-01T08:00:00Z --until -2h
    """
    from syncer.runner.poller import PollOptions
    from syncer.runner.run import run_poller

    if until_time is not None and from_time is None:
        raise click.UsageError("--until needs --from (the start of the window to replay)")
    margin_source = click.get_current_context().get_parameter_source("until_margin_s")
    if from_time is None and margin_source is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--until-margin-s needs --from (it applies to a replay)")
    replay = None
    if from_time is not None:
        from syncer.runner.window import ReplayWindow

        now = dt.datetime.now(dt.UTC)
        replay = ReplayWindow.parse(from_time, until_time, now, until_margin_s)
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
        kinesis_streams=kinesis_streams,
        replay=replay,
    )
