"""``syncer run`` under faults injected into real services: nothing is lost, gaps are counted."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from syncer.config import load_config
from syncer.runner.poller import PollOptions
from syncer.runner.run import run_poller
from syncer.sinks.build import aws_client
from tests.integration.conftest import Stack, free_port, write_config

pytestmark = pytest.mark.integration

ONCE = PollOptions(once=True, idle_sleep_s=0.05)
API_NAMES = {"get_records": "GetRecords", "get_shard_iterator": "GetShardIterator"}


class FaultOnce:
    """The real DynamoDB Streams client; the first ``method`` call matching ``when`` raises ``code``."""

    def __init__(
        self,
        real: Any,
        method: str,
        code: str,
        when: Callable[[Mapping[str, Any]], bool] = lambda request: True,
    ) -> None:
        self.real = real
        self.method = method
        self.code = code
        self.when = when
        self.injected = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if name != self.method:
            return attribute

        def faulty(**request: Any) -> Any:
            if not self.injected and self.when(request):
                self.injected += 1
                error = {"Code": self.code, "Message": "injected by the test"}
                response = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
                raise ClientError(response, API_NAMES[name])
            return attribute(**request)

        return faulty


def _write_items(stack: Stack, pks: Sequence[str]) -> None:
    for pk in pks:
        stack.put({"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": "shoes"}})


def test_checkpoint_does_not_move_while_opensearch_is_unreachable(
    stack: Stack, tmp_path: Path
) -> None:
    """Failed batches leave no checkpoint; the next run with OpenSearch back indexes everything."""
    _write_items(stack, ["u1", "u2", "u3"])
    checkpoint_file = tmp_path / "checkpoints.json"
    section = f'[opensearch]\nurl = "http://127.0.0.1:{free_port()}"\ntimeout_s = 1\n'
    down = write_config(tmp_path / "down.toml", stack.table, stack.index, opensearch=section)
    # when the worker runs a few passes against a closed port
    summary = run_poller(
        load_config(str(down), environ={}),
        PollOptions(once=True, idle_sleep_s=0.05, max_passes=4),
        checkpoint_file=str(checkpoint_file),
    )
    # then every batch was retried and no checkpoint was written
    assert summary.failures_retried >= 1
    assert not summary.caught_up
    assert not checkpoint_file.exists()
    assert stack.indexed() == {}
    # and a run with OpenSearch reachable delivers every record
    recovered = run_poller(stack.config, ONCE, checkpoint_file=str(checkpoint_file))
    assert recovered.records == 3
    assert stack.indexed() == stack.scanned()
    assert checkpoint_file.exists()


def test_an_expired_iterator_is_replaced_and_nothing_is_lost(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ExpiredIteratorException on GetRecords: a new iterator from the checkpoint, all indexed."""
    _write_items(stack, ["e1", "e2", "e3"])
    streams = FaultOnce(aws_client("dynamodbstreams"), "get_records", "ExpiredIteratorException")
    with caplog.at_level(logging.WARNING, logger="syncer.runner.poller"):
        summary = run_poller(
            stack.config, ONCE, checkpoint_file=str(tmp_path / "cp.json"), streams=streams
        )
    assert streams.injected == 1
    assert summary.expired_iterators == 1
    assert summary.gaps == 0
    assert "shard iterator expired" in caplog.text
    assert stack.indexed() == stack.scanned()


def test_a_trimmed_checkpoint_logs_a_gap_and_reads_from_trim_horizon(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TrimmedDataAccessException: one warning naming table, shard and checkpoint; a counted gap."""
    checkpoint_file = tmp_path / "cp.json"
    _write_items(stack, ["t1", "t2"])
    run_poller(stack.config, ONCE, checkpoint_file=str(checkpoint_file))
    ((shard_id, saved),) = json.loads(checkpoint_file.read_text())[stack.stream_arn].items()
    _write_items(stack, ["t3"])
    streams = FaultOnce(
        aws_client("dynamodbstreams"),
        "get_shard_iterator",
        "TrimmedDataAccessException",
        when=lambda request: request["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER",
    )
    # when the checkpoint is older than the stream keeps
    with caplog.at_level(logging.WARNING, logger="syncer.runner.poller"):
        summary = run_poller(
            stack.config, ONCE, checkpoint_file=str(checkpoint_file), streams=streams
        )
    # then one gap is logged and counted, and reading restarts at the oldest record
    (warning,) = [r.getMessage() for r in caplog.records if "GAP" in r.getMessage()]
    assert stack.table in warning
    assert shard_id in warning
    assert saved["sequence_number"] in warning
    assert summary.gaps == 1
    assert summary.records == 3
    assert stack.indexed() == stack.scanned()
