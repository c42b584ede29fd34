"""Only ``syncer.config`` reads the process environment; its readers answer from what is given."""

from __future__ import annotations

import re
from pathlib import Path

from syncer.config import aws_endpoint_overridden, emf_metrics_enabled, running_in_lambda

PACKAGE = Path(__file__).resolve().parents[2] / "syncer"
# runtime.py still defaults its secret lookups to os.environ; it belongs to another change.
READERS = {"config.py", "runtime.py"}


def test_no_other_module_reads_the_environment() -> None:
    """No module but the allowed readers mentions os.environ or getenv."""
    reading = re.compile(r"\bos\.environ\b|\bgetenv\(")
    offenders = sorted(
        path.name
        for path in PACKAGE.glob("*.py")
        if path.name not in READERS and reading.search(path.read_text(encoding="utf-8"))
    )
    assert offenders == []


def test_lambda_is_recognised_by_its_function_name() -> None:
    """AWS_LAMBDA_FUNCTION_NAME set and non-empty means the process runs in Lambda."""
    assert running_in_lambda({"AWS_LAMBDA_FUNCTION_NAME": "syncer"})
    assert not running_in_lambda({"AWS_LAMBDA_FUNCTION_NAME": ""})
    assert not running_in_lambda({})


def test_emf_metrics_are_on_unless_turned_off() -> None:
    """SYNCER_METRICS defaults to emf; any other value turns the EMF line off."""
    assert emf_metrics_enabled({})
    assert emf_metrics_enabled({"SYNCER_METRICS": "emf"})
    assert not emf_metrics_enabled({"SYNCER_METRICS": "off"})


def test_either_endpoint_variable_means_an_emulator() -> None:
    """AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_DYNAMODB points AWS calls at a local emulator."""
    assert aws_endpoint_overridden({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert aws_endpoint_overridden({"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:5000"})
    assert not aws_endpoint_overridden({"AWS_ENDPOINT_URL": ""})
