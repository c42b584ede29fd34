"""`syncer kcl-worker`: one worker of a fleet on KCL 3 (ECS, Kubernetes) following a Kinesis stream."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

import click

from syncer.cli.app import CONFIG_HELP, load, main


@main.command("kcl-worker")
@click.option("--config", "config_path", help=CONFIG_HELP)
@click.option(
    "--stream",
    help="The Kinesis stream (name or ARN) the table writes to "
    "(default: the one kinesis_stream of the configured [[tables]]).",
)
@click.option(
    "--application",
    required=True,
    help="KCL application name: the fleet's workers share it, and KCL's lease table is named so.",
)
@click.option("--worker-id", help="This worker's name in the lease table (default: KCL's UUID).")
@click.option(
    "--retrieval-mode",
    type=click.Choice(["POLLING", "FANOUT"]),
    default="POLLING",
    show_default=True,
    help="GetRecords polling, or enhanced fan-out (a dedicated 2 MB/s per shard, at a cost).",
)
@click.option(
    "--initial-position",
    type=click.Choice(["TRIM_HORIZON", "LATEST"]),
    default="TRIM_HORIZON",
    show_default=True,
    help="Where a shard without a checkpoint starts.",
)
@click.option(
    "--metrics-level",
    type=click.Choice(["NONE", "SUMMARY", "DETAILED"]),
    default="NONE",
    show_default=True,
    help="KCL's own CloudWatch metrics.",
)
@click.option(
    "--property",
    "properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="Another KCL property, e.g. failoverTimeMillis=10000 (repeatable).",
)
@click.option(
    "--properties-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the daemon's properties to this file (default: a temporary file).",
)
@click.option(
    "--write-only",
    is_flag=True,
    help="Write the properties (to --properties-out) and print the java command; do not run.",
)
@click.option(
    "--jvm-option", "jvm_options", multiple=True, help="An option for java, e.g. -Xmx512m."
)
@click.option(
    "--class-path-first",
    multiple=True,
    help="A class path entry put before KCL's jars (repeatable).",
)
def kcl_worker(
    config_path: str | None,
    stream: str | None,
    application: str,
    worker_id: str | None,
    retrieval_mode: str,
    initial_position: str,
    metrics_level: str,
    properties: tuple[str, ...],
    properties_out: str | None,
    write_only: bool,
    jvm_options: tuple[str, ...],
    class_path_first: tuple[str, ...],
) -> None:
    """Run a KCL MultiLangDaemon whose record processor is syncer's pipeline.

    Start the same command on every worker of the fleet: KCL shares the stream's shards among
    them (its lease table is named after --application) and hands a shard's lease to another
    worker when one stops. Each batch runs through the same pipeline as the Lambda function;
    a checkpoint is saved only up to the last record handled (indexed, or dead-lettered), and
    a failed record is retried, never skipped. SIGTERM stops gracefully. Needs Java 17.

    Example: syncer kcl-worker --config syncer.toml --stream orders-changes --application orders-sync
    """
    from syncer.config import config_path as resolve_config_path
    from syncer.errors import ConfigError
    from syncer.runner import kcldaemon
    from syncer.sinks.build import aws_client

    path = resolve_config_path(config_path).resolve()
    config = load(str(path))
    if not config.tables:
        raise ConfigError(f"{path} configures no [[tables]]: nothing to keep in step")
    jars = kcldaemon.kclpy_jars()
    java = kcldaemon.find_java(os.environ)
    kinesis = aws_client("kinesis")
    kinesis_endpoint, dynamodb_endpoint = kcldaemon.aws_endpoints(os.environ)
    settings = kcldaemon.WorkerSettings(
        stream_arn=kcldaemon.stream_arn_of(
            kinesis,
            kcldaemon.configured_stream(
                stream, {table.name: table.kinesis_stream for table in config.tables}
            ),
        ),
        application=application,
        config_path=path,
        region=kinesis.meta.region_name,
        kinesis_endpoint=kinesis_endpoint,
        dynamodb_endpoint=dynamodb_endpoint,
        worker_id=worker_id,
        retrieval_mode=retrieval_mode,
        metrics_level=metrics_level,
        initial_position=initial_position,
        extra=dict(kcldaemon.parse_property(text) for text in properties),
    )
    text = kcldaemon.daemon_properties(settings)
    if properties_out is not None:
        target = Path(properties_out)
    elif write_only:
        raise click.UsageError("--write-only needs --properties-out FILE")
    else:
        handle, name = tempfile.mkstemp(prefix=f"syncer-kcl-{application}-", suffix=".properties")
        os.close(handle)
        target = Path(name)
        click.get_current_context().call_on_close(lambda: target.unlink(missing_ok=True))
    target.write_text(text, encoding="utf-8")
    command = kcldaemon.daemon_command(java, jars, target, jvm_options, class_path_first)
    if write_only:
        click.echo(f"wrote {target}; run the daemon with:")
        click.echo(shlex.join(command))
        return
    click.echo(
        f"KCL worker for {settings.stream_arn} (application {application}); properties in {target}",
        err=True,
    )
    status = kcldaemon.run_daemon(command)
    if status not in (0, -15, 143):  # 143/-15: the daemon ended by the SIGTERM we forwarded
        sys.exit(status if status > 0 else 1)
