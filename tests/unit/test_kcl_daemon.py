"""`syncer kcl-worker`'s daemon properties and java command (pure: no daemon is started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncer.errors import ConfigError
from syncer.runner.kcldaemon import (
    DAEMON_CLASS,
    WorkerSettings,
    aws_endpoints,
    configured_stream,
    daemon_command,
    daemon_properties,
    find_java,
    kclpy_jars,
    parse_property,
)

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders-changes"


def settings(**changes: object) -> WorkerSettings:
    fields: dict[str, object] = {
        "stream_arn": ARN,
        "application": "orders-sync",
        "config_path": Path("/etc/syncer/syncer.toml"),
        "region": "eu-west-1",
    }
    fields.update(changes)
    return WorkerSettings(**fields)  # type: ignore[arg-type]


def parsed(text: str) -> dict[str, str]:
    return dict(
        line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_the_defaults_poll_from_the_trim_horizon_without_kcl_metrics_on_aws() -> None:
    """Polling, TRIM_HORIZON, no CloudWatch metrics, AWS's endpoints, the processor's command."""
    properties = parsed(daemon_properties(settings(), python="/venv/bin/python"))
    assert properties == {
        "executableName": "/venv/bin/python -m syncer.runner.kcl --config "
        f"/etc/syncer/syncer.toml --stream-arn {ARN}",
        "streamName": "orders-changes",
        "applicationName": "orders-sync",
        "processingLanguage": properties["processingLanguage"],
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "regionName": "eu-west-1",
        "initialPositionInStream": "TRIM_HORIZON",
        "retrievalMode": "POLLING",
        "metricsLevel": "NONE",
        "shutdownGraceMillis": "25000",
    }


def test_endpoints_worker_id_and_extra_properties_are_written() -> None:
    """An emulator's endpoints, a worker id and tuning properties all reach the file."""
    text = daemon_properties(
        settings(
            kinesis_endpoint="http://127.0.0.1:5000",
            dynamodb_endpoint="http://127.0.0.1:5001",
            worker_id="w1",
            extra={"failoverTimeMillis": "5000", "shutdownGraceMillis": "9000"},
        )
    )
    properties = parsed(text)
    assert properties["kinesisEndpoint"] == "http://127.0.0.1:5000"
    assert properties["dynamoDBEndpoint"] == "http://127.0.0.1:5001"
    assert properties["workerId"] == "w1"
    assert properties["failoverTimeMillis"] == "5000"
    assert properties["shutdownGraceMillis"] == "9000"


def test_the_command_owned_properties_cannot_be_overridden() -> None:
    """--property streamName=... would point the processor at another stream: refused."""
    with pytest.raises(ConfigError, match="cannot set streamName"):
        daemon_properties(settings(extra={"streamName": "other"}))


def test_a_path_with_a_space_is_refused_with_the_reason() -> None:
    """The daemon splits executableName on spaces: a config path with one is a clear error."""
    with pytest.raises(ConfigError, match="splits the processor's command on spaces"):
        daemon_properties(settings(config_path=Path("/my configs/syncer.toml")))


@pytest.mark.parametrize("text", ["failoverTimeMillis", "=5", "key=", " = "])
def test_a_property_without_key_and_value_is_refused(text: str) -> None:
    """--property takes KEY=VALUE."""
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_property(text)


def test_endpoints_come_from_the_sdks_variables() -> None:
    """AWS_ENDPOINT_URL_KINESIS / _DYNAMODB win over AWS_ENDPOINT_URL; none: AWS's own."""
    assert aws_endpoints({}) == (None, None)
    assert aws_endpoints({"AWS_ENDPOINT_URL": "http://e"}) == ("http://e", "http://e")
    assert aws_endpoints(
        {"AWS_ENDPOINT_URL": "http://e", "AWS_ENDPOINT_URL_KINESIS": "http://k"}
    ) == ("http://k", "http://e")


def test_the_java_command_puts_extra_class_path_entries_before_kcls_jars() -> None:
    """A test's class path entry comes first; JVM options before the class path."""
    command = daemon_command(
        "/usr/bin/java", Path("/jars"), Path("/p.properties"), ["-Xmx256m"], ["/shim"]
    )
    assert command == [
        "/usr/bin/java",
        "-Xmx256m",
        "-cp",
        "/shim:/jars/*",
        DAEMON_CLASS,
        "--properties-file",
        "/p.properties",
    ]


def test_no_java_is_a_clear_error(tmp_path: Path) -> None:
    """Neither JAVA_HOME nor PATH has java: say what to install."""
    with pytest.raises(ConfigError, match="needs a Java 17 runtime"):
        find_java({"PATH": str(tmp_path)})


def test_a_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without amazon-kclpy, kcl-worker says which extra to install."""
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'syncer\[kcl\]'"):
        kclpy_jars()


def test_neither_the_lambda_handler_nor_the_cli_imports_amazon_kclpy() -> None:
    """The extra is loaded only by the record processor: cold starts and `syncer` stay as they were."""
    code = (
        "import sys, syncer.handler, syncer.cli; "
        "loaded = sorted(m for m in sys.modules if m.startswith(('amazon_kclpy', 'syncer.runner.kcl'))); "
        "print(loaded)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_the_stream_comes_from_the_tables_kinesis_stream_unless_given() -> None:
    """--stream wins; without it, the one kinesis_stream the tables name (tables sharing a
    stream count once); none, or several, is a clear error naming what to do."""
    assert configured_stream("given", {"orders": "orders-changes"}) == "given"
    assert configured_stream(None, {"orders": "changes", "lines": "changes", "x": None}) == (
        "changes"
    )
    with pytest.raises(ConfigError, match="give --stream, or set kinesis_stream"):
        configured_stream(None, {"orders": None})
    with pytest.raises(ConfigError, match=r"several Kinesis streams \(a -> one, b -> two\)"):
        configured_stream(None, {"b": "two", "a": "one"})
