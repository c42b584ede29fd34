"""`syncer run` serves Prometheus metrics and a health endpoint while it works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Stack, free_port, syncer_run_command, wait_until

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def _metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not exposed")


def test_run_exposes_metrics_and_health(stack: Stack, tmp_path: Path) -> None:
    """While `syncer run` follows the stream, /metrics counts its records and /healthz says ok."""
    for number in range(4):
        stack.put({"pk": {"S": f"m{number}"}, "sk": {"S": "v1"}, "category": {"S": "hats"}})
    port = free_port()
    command = syncer_run_command(stack.config_path, tmp_path / "checkpoints.json", port)
    log_path = tmp_path / "run.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(command, env=dict(os.environ), stdout=log, stderr=log) as process,
    ):
        try:
            wait_until(lambda: _get(f"http://127.0.0.1:{port}/metrics")[0] == 200, timeout_s=30)
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            wait_until(lambda: b"syncer_records_in_total 4.0" in _get(metrics_url)[1], timeout_s=30)
            text = _get(metrics_url)[1].decode()
            assert _metric(text, "syncer_indexed_total") == 4
            assert _metric(text, "syncer_failed_total") == 0
            assert _metric(text, "syncer_batches_total") >= 1
            assert _metric(text, "syncer_bulk_latency_seconds_count") >= 1
            status, body = _get(f"http://127.0.0.1:{port}/healthz")
            assert status == 200
            assert json.loads(body)["healthy"] is True
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    batches = [line for line in lines if line.get("message") == "batch done"]
    assert batches
    assert batches[0]["batch"]["records_in"] == 4
