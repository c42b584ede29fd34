"""`syncer run` checks sampled keys in process and counts them on /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Stack,
    free_port,
    syncer_run_command,
    wait_until,
    write_config,
)
from tests.integration.test_run_metrics import _get, _metric

pytestmark = pytest.mark.integration


def test_run_checks_written_keys_and_serves_the_counts(stack: Stack, tmp_path: Path) -> None:
    """Four keys checked three seconds after their batch: the one edited meanwhile is a violation."""
    # given every key sampled, checked 3 s after its batch, and four items in the stream
    consistency = "[consistency]\nsample_rate = 1.0\ncheck_after_s = 3\n"
    write_config(stack.config_path, stack.table, stack.index, consistency=consistency)
    for number in range(4):
        stack.put({"pk": {"S": f"c{number}"}, "sk": {"S": "v1"}, "category": {"S": "hats"}})
    port = free_port()
    command = syncer_run_command(stack.config_path, tmp_path / "checkpoints.json", port)
    url = f"http://127.0.0.1:{port}/metrics"
    log_path = tmp_path / "run.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(command, env=dict(os.environ), stdout=log, stderr=log) as process,
    ):
        try:
            # when syncer run has written them, and one document is edited behind its back
            wait_until(lambda: b"syncer_indexed_total 4.0" in _get(url)[1], timeout_s=30)
            stack.sinks.opensearch.update(
                index=stack.index, id="c2|v1", body={"doc": {"category": "edited by hand"}}
            )
            # then /metrics counts four checks and one content_differs
            wait_until(lambda: b"syncer_consistency_checks_total 4.0" in _get(url)[1], 30)
            text = _get(url)[1].decode()
            violations = 'syncer_consistency_violations_total{kind="content_differs"}'
            assert f"{violations} 1.0" in text
            assert 'syncer_consistency_violations_total{kind="index_missing"} 0.0' in text
            assert _metric(text, "syncer_freshness_p99_seconds") > 0
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    # and the violation has its log line, with the key, both versions and the kind
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    (violation,) = [line for line in lines if line.get("kind") == "content_differs"]
    assert violation["key"] == "c2|v1"
    assert violation["written_version"] == violation["indexed_version"]
