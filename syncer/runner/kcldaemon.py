"""``syncer kcl-worker``'s wiring: the MultiLangDaemon's properties, its java command, its run.

KCL 3's MultiLangDaemon (Java, from amazon-kclpy's jars) owns the leases and shard balancing of
a fleet; it starts ``python -m syncer.runner.kcl`` for each shard it leases. Nothing here
imports amazon_kclpy: its jars are found by the package's location, so a missing extra is a
clear error, not an ImportError.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError

DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
INSTALL_HINT = "install the extra: pip install 'syncer[kcl]'"
RETRIEVAL_MODES = ("POLLING", "FANOUT")
METRICS_LEVELS = ("NONE", "SUMMARY", "DETAILED")
INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")
DEFAULT_SHUTDOWN_GRACE_MS = 25_000
# Properties the command writes itself: --property may not set them (they would disagree).
_OWN_PROPERTIES = frozenset(
    {"executableName", "streamName", "streamArn", "applicationName", "processingLanguage"}
)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What one worker's MultiLangDaemon properties say (docs/deploy.md, "A fleet on KCL")."""

    stream_arn: str
    application: str
    config_path: Path  # absolute: the daemon starts the processor from its own directory
    region: str
    kinesis_endpoint: str | None = None  # None: AWS's own
    dynamodb_endpoint: str | None = None
    worker_id: str | None = None  # None: KCL makes one (a UUID)
    retrieval_mode: str = "POLLING"
    metrics_level: str = "NONE"
    initial_position: str = "TRIM_HORIZON"
    extra: Mapping[str, str] = field(default_factory=dict)  # more KCL properties, verbatim


def processor_command(settings: WorkerSettings, python: str) -> str:
    """The ``executableName`` line: the daemon splits it on spaces, so no part may hold one."""
    parts = [
        python,
        "-m",
        "syncer.runner.kcl",
        "--config",
        str(settings.config_path),
        "--stream-arn",
        settings.stream_arn,
    ]
    for part in parts:
        if not part or any(c.isspace() for c in part):
            raise ConfigError(
                f"{part!r} has a space: KCL's MultiLangDaemon splits the processor's command "
                "on spaces; move the configuration file (or Python) to a path without one"
            )
    return " ".join(parts)


def daemon_properties(settings: WorkerSettings, python: str = sys.executable) -> str:
    """The MultiLangDaemon's properties file for ``settings``, as text."""
    for name, value, allowed in (
        ("retrieval mode", settings.retrieval_mode, RETRIEVAL_MODES),
        ("metrics level", settings.metrics_level, METRICS_LEVELS),
        ("initial position", settings.initial_position, INITIAL_POSITIONS),
    ):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    clashes = sorted(_OWN_PROPERTIES & set(settings.extra))
    if clashes:
        raise ConfigError(f"--property cannot set {', '.join(clashes)}: the command sets them")
    properties: dict[str, str] = {
        "executableName": processor_command(settings, python),
        # The name, not the ARN: with an ARN the SDK derives account-specific endpoints.
        "streamName": settings.stream_arn.rsplit("/", 1)[-1],
        "applicationName": settings.application,
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "regionName": settings.region,
        "initialPositionInStream": settings.initial_position,
        "retrievalMode": settings.retrieval_mode,
        "metricsLevel": settings.metrics_level,
        # On SIGTERM the daemon asks each shard to checkpoint and waits this long (KCL's
        # default, 0, gives up at once). Keep it below the orchestrator's stop timeout (ECS
        # stopTimeout, Kubernetes terminationGracePeriodSeconds: 30 s by default).
        "shutdownGraceMillis": str(DEFAULT_SHUTDOWN_GRACE_MS),
    }
    if settings.kinesis_endpoint:
        properties["kinesisEndpoint"] = settings.kinesis_endpoint
    if settings.dynamodb_endpoint:
        properties["dynamoDBEndpoint"] = settings.dynamodb_endpoint
    if settings.worker_id:
        properties["workerId"] = settings.worker_id
    properties.update(settings.extra)
    lines = [
        "# KCL MultiLangDaemon properties written by `syncer kcl-worker` (docs/deploy.md).",
        *(f"{key} = {value}" for key, value in properties.items()),
    ]
    return "\n".join(lines) + "\n"


def parse_property(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--property`` as a pair; a clear error otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"--property takes KEY=VALUE (a KCL property), not {text!r}")
    return key.strip(), value.strip()


def aws_endpoints(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(Kinesis, DynamoDB) endpoints from the AWS SDK's variables; None: AWS's own."""
    shared = environ.get("AWS_ENDPOINT_URL")
    return (
        environ.get("AWS_ENDPOINT_URL_KINESIS") or shared,
        environ.get("AWS_ENDPOINT_URL_DYNAMODB") or shared,
    )


def configured_stream(given: str | None, table_streams: Mapping[str, str | None]) -> str:
    """The stream a worker follows: ``--stream`` when given, else the one ``kinesis_stream``
    the configured tables name (table -> its ``kinesis_stream`` or None); a clear error when
    they name none or several."""
    if given:
        return given
    named = {stream for stream in table_streams.values() if stream}
    if len(named) == 1:
        return named.pop()
    if not named:
        raise ConfigError(
            "no Kinesis stream to follow: give --stream, or set kinesis_stream in the "
            "[[tables]] entry of the table that streams to it"
        )
    listed = ", ".join(
        f"{table} -> {stream}" for table, stream in sorted(table_streams.items()) if stream
    )
    raise ConfigError(
        f"the tables name several Kinesis streams ({listed}); a worker follows one: give "
        "--stream (one fleet, with its own --application, per stream)"
    )


def stream_arn_of(kinesis: Any, stream: str) -> str:
    """The stream's ARN (``stream`` is a name or an ARN); a clear error when it is missing."""
    request = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
    try:
        summary = kinesis.describe_stream_summary(**request)["StreamDescriptionSummary"]
    except kinesis.exceptions.ResourceNotFoundException:
        raise ConfigError(
            f"Kinesis stream {stream!r} not found in {kinesis.meta.region_name} "
            "(check --stream, AWS_REGION and the AWS_ENDPOINT_URL variables)"
        ) from None
    return str(summary["StreamARN"])


def kclpy_jars() -> Path:
    """amazon-kclpy's directory of the MultiLangDaemon's jars; a clear error without it."""
    spec = importlib.util.find_spec("amazon_kclpy")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"amazon-kclpy is not installed: {INSTALL_HINT}")
    jars = Path(next(iter(spec.submodule_search_locations))) / "jars"
    if not any(jars.glob("amazon-kinesis-client-multilang-*.jar")):
        raise ConfigError(
            f"amazon-kclpy has no MultiLangDaemon jar in {jars} (its install downloads them "
            f"from Maven Central): reinstall it: {INSTALL_HINT}"
        )
    return jars


def find_java(environ: Mapping[str, str]) -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH; a clear error when neither exists."""
    home = environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java", path=environ.get("PATH"))
    if found is None:
        raise ConfigError(
            "java not found (on PATH or in $JAVA_HOME): KCL's MultiLangDaemon needs a Java 17 "
            "runtime, e.g. apt-get install openjdk-17-jre-headless"
        )
    return found


def daemon_command(
    java: str,
    jars: Path,
    properties_file: Path,
    jvm_options: Sequence[str] = (),
    class_path_first: Sequence[str] = (),
) -> list[str]:
    """The java command line of the MultiLangDaemon; ``class_path_first`` comes before KCL."""
    class_path = os.pathsep.join([*class_path_first, str(jars / "*")])
    return [
        java,
        *jvm_options,
        "-cp",
        class_path,
        DAEMON_CLASS,
        "--properties-file",
        str(properties_file),
    ]


def run_daemon(command: Sequence[str]) -> int:
    """Run the daemon until it exits; its exit status.

    It leads a process group of its own with the processors it starts: SIGTERM or SIGINT here
    goes to the whole group, so the daemon shuts down gracefully (each shard is asked to
    checkpoint) and a processor stuck retrying a record stops doing so.
    """
    daemon = subprocess.Popen(command, start_new_session=True)

    def forward(signum: int, frame: object) -> None:
        try:
            os.killpg(daemon.pid, signal.SIGTERM)
        except ProcessLookupError:
            return  # it already exited

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return daemon.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
