"""``syncer run`` on a real table and stream in the emulator, with real OpenSearch and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncer import pipeline
from syncer.cli import main
from syncer.config import load_config
from syncer.core.outcome import BatchOutcome
from syncer.runner import poller
from syncer.runner.poller import PollOptions
from syncer.runner.run import run_poller
from syncer.sinks.checkpoints import RedisCheckpointStore, ShardCheckpoint
from tests.integration.conftest import BOTH_REDIS_TOPOLOGIES, Stack, wait_until, write_config

pytestmark = pytest.mark.integration

ONCE = PollOptions(once=True, idle_sleep_s=0.05)


def _item(pk: str, category: str = "shoes") -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "name": {"S": f"Product {pk}"},
        "category": {"S": category},
        "price": {"N": "19.99"},
        "cost": {"N": "7"},
    }


def _write_items(stack: Stack, pks: Sequence[str]) -> None:
    for pk in pks:
        stack.put(_item(pk))


def _checkpoints(path: Path, stack: Stack) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())[stack.stream_arn]
    return loaded


def _last_sequence_number(stack: Stack) -> str:
    return str(stack.stream_records()[-1]["dynamodb"]["SequenceNumber"])


def test_run_once_makes_the_index_equal_to_the_table(stack: Stack, tmp_path: Path) -> None:
    """Inserts, a move and a delete read from the stream end with search equal to a table scan."""
    # given items written, one moved to another category and one deleted
    _write_items(stack, [f"p{n}" for n in range(12)])
    stack.put(_item("p3", category="hats"))
    stack.delete("p4", "v1")
    checkpoint_file = tmp_path / "checkpoints.json"
    # when the worker drains the stream in batches of 5
    summary = run_poller(
        stack.config,
        PollOptions(once=True, batch_size=5, idle_sleep_s=0.05),
        checkpoint_file=str(checkpoint_file),
    )
    # then the index equals the table and the shard is checkpointed at the last record
    assert stack.indexed() == stack.scanned()
    assert (summary.records, summary.batches, summary.caught_up) == (14, 3, True)
    (shard,) = _checkpoints(checkpoint_file, stack).values()
    assert shard == {"sequence_number": _last_sequence_number(stack), "finished": False}


def test_cli_run_once_syncs_and_exits_zero(stack: Stack, tmp_path: Path) -> None:
    """`syncer run --config ... --once` drains the stream and exits 0."""
    _write_items(stack, ["a", "b", "c"])
    checkpoint_file = tmp_path / "cli-checkpoints.json"
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--config",
            str(stack.config_path),
            "--once",
            "--checkpoint-file",
            str(checkpoint_file),
            "--metrics-port",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert stack.indexed() == stack.scanned()
    assert len(stack.indexed()) == 3
    assert checkpoint_file.exists()


def test_a_restart_processes_only_the_records_after_the_checkpoint(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run resumes after the saved checkpoint: earlier records are not delivered again."""
    checkpoint_file = str(tmp_path / "checkpoints.json")
    _write_items(stack, ["old-1", "old-2", "old-3"])
    run_poller(stack.config, ONCE, checkpoint_file=checkpoint_file)
    already_read = {r["dynamodb"]["SequenceNumber"] for r in stack.stream_records()}
    delivered: list[str] = []

    def spy(records: Sequence[Any], *args: Any, **kwargs: Any) -> BatchOutcome:
        delivered.extend(r["dynamodb"]["SequenceNumber"] for r in records)
        return pipeline.process_batch(records, *args, **kwargs)

    monkeypatch.setattr(poller, "process_batch", spy)
    # when two more items are written and the worker starts again
    _write_items(stack, ["new-1", "new-2"])
    summary = run_poller(stack.config, ONCE, checkpoint_file=checkpoint_file)
    # then only the two new records went through the pipeline
    assert len(delivered) == summary.records == 2
    assert not already_read & set(delivered)
    assert stack.indexed() == stack.scanned()


@BOTH_REDIS_TOPOLOGIES
def test_redis_checkpoint_store_round_trip(stack: Stack) -> None:
    """Checkpoints saved in the Redis hash load back per stream, finished flag included."""
    key = f"syncer-test-checkpoints-{uuid.uuid4().hex}"
    client = stack.sinks.redis
    try:
        RedisCheckpointStore(client, key).save(stack.stream_arn, "shard-a", ShardCheckpoint("42"))
        RedisCheckpointStore(client, key).save(
            stack.stream_arn, "shard-b", ShardCheckpoint("77", finished=True)
        )
        RedisCheckpointStore(client, key).save("arn:other-stream", "shard-a", ShardCheckpoint("9"))
        loaded = RedisCheckpointStore(client, key).load(stack.stream_arn)
        assert loaded == {
            "shard-a": ShardCheckpoint("42"),
            "shard-b": ShardCheckpoint("77", finished=True),
        }
        store = RedisCheckpointStore(client, key)
        assert store.forget_others(stack.stream_arn, {"shard-a"}) == ["shard-b"]
        assert store.load(stack.stream_arn) == {"shard-a": ShardCheckpoint("42")}
        assert store.load("arn:other-stream") == {"shard-a": ShardCheckpoint("9")}
    finally:
        client.delete(key)


@BOTH_REDIS_TOPOLOGIES
def test_run_keeps_checkpoints_in_redis_when_configured(
    stack: Stack, tmp_path: Path, redis_url: str
) -> None:
    """With [checkpoints] redis_key the worker saves its positions in that Redis hash."""
    key = f"syncer-test-checkpoints-{uuid.uuid4().hex}"
    section = f'[checkpoints]\nredis_key = "{key}"\n'
    path = write_config(
        tmp_path / "redis.toml", stack.table, stack.index, redis_url, checkpoints=section
    )
    config = load_config(str(path))
    _write_items(stack, ["r1", "r2"])
    try:
        run_poller(config, ONCE)
        (checkpoint,) = RedisCheckpointStore(stack.sinks.redis, key).load(stack.stream_arn).values()
        assert checkpoint == ShardCheckpoint(_last_sequence_number(stack))
    finally:
        stack.sinks.redis.delete(key)
    assert stack.indexed() == stack.scanned()


def test_sigterm_finishes_saves_checkpoints_and_exits_zero(stack: Stack, tmp_path: Path) -> None:
    """The `syncer run` process stops on SIGTERM with exit code 0 and a saved checkpoint file."""
    _write_items(stack, [f"s{n}" for n in range(5)])
    checkpoint_file = tmp_path / "checkpoints.json"
    log_file = tmp_path / "run.log"
    command = [
        str(Path(sys.executable).parent / "syncer"),
        "run",
        "--config",
        str(stack.config_path),
        "--checkpoint-file",
        str(checkpoint_file),
        "--idle-sleep-s",
        "0.2",
        "--metrics-port",
        "0",
    ]
    with (
        log_file.open("w") as log,
        subprocess.Popen(
            command, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            wait_until(
                lambda: process.poll() is not None or len(stack.indexed()) == 5, timeout_s=30
            )
            assert process.poll() is None, log_file.read_text()
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    output = log_file.read_text()
    assert exit_code == 0, output
    assert "syncer run done" in output
    (shard,) = _checkpoints(checkpoint_file, stack).values()
    assert shard["sequence_number"] == _last_sequence_number(stack)
