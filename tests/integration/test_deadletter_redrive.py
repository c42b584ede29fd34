"""Dead-letter list and redrive on the real services: nothing destroyed, every run ends, exit codes tell."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from syncer.cli import main
from syncer.sinks.deadletter import DeadLetter, encode_entry, entry_record
from tests.integration.conftest import Stack
from tests.integration.test_sqs_deadletters import _from_unconfigured_table

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _syncer(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``syncer`` command in a child process (killed if it outlives ``timeout_s``)."""
    return subprocess.run(
        [sys.executable, "-c", "from syncer.cli import main; main()", *args],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_sqs_redrive_of_a_rejected_record_ends_and_says_so(
    stack: Stack, queue_url: str, sqs: Any
) -> None:
    """A record rejected again is redriven once, counted as rejected again, and the command exits 1."""
    # given a queue holding the dead letter of a good record and of an unconfigured table's record
    stack.put({"pk": {"S": "good"}, "sk": {"S": "v1"}, "name": {"S": "g"}})
    stack.put({"pk": {"S": "stranger"}, "sk": {"S": "v1"}, "name": {"S": "s"}})
    good, record = stack.new_records()
    stranger = _from_unconfigured_table(stack, record, "9" * 30)
    assert stack.invoke([stranger]) == {"batchItemFailures": []}
    letter = DeadLetter(good, stack.table, "CacheInvalidationError", "redis was down", "1")
    sqs.send_message(QueueUrl=queue_url, MessageBody=encode_entry(letter).decode())
    # when the queue is redriven (the old code never returned: killed after 60 s)
    done = _syncer("deadletter", "redrive", "--config", str(stack.config_path))
    # then it ended, exits 1, and counts one redriven and one rejected again
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 entries: 1 redriven, 1 rejected again" in done.stdout
    assert set(stack.indexed()) == {"good|v1"}
    # and the queue holds exactly one entry: the new one, with the new reason, for the stranger
    assert _queue_counts(sqs, queue_url) == (1, 0)
    (message,) = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    entry = orjson.loads(message["Body"])
    assert entry["sequence_number"] == "9" * 30
    assert "not configured" in entry["error"]["message"]
    assert entry_record(entry) == stranger


def test_sqs_redrive_keeps_an_unreadable_message(stack: Stack, queue_url: str, sqs: Any) -> None:
    """A message that is not an entry is reported and left in the queue, and the command exits 1."""
    # given a queue holding a message that is not JSON
    sqs.send_message(QueueUrl=queue_url, MessageBody="not a dead letter {")
    # when the queue is redriven
    done = _syncer("deadletter", "redrive", "--config", str(stack.config_path))
    # then it is counted as unreadable and still in the queue (in flight until its timeout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 unreadable (kept as stored)" in done.stdout
    assert sum(_queue_counts(sqs, queue_url)) == 1


def _surrogate_record(stack: Stack) -> dict[str, Any]:
    """A stream record whose key holds a lone surrogate, as a hand-made event parsed by json can."""
    stack.put({"pk": {"S": "surrogate"}, "sk": {"S": "v1"}})
    (record,) = stack.new_records()
    odd = copy.deepcopy(record)
    odd["dynamodb"]["Keys"]["pk"] = {"S": "x\udfff"}
    odd["dynamodb"]["NewImage"]["pk"] = {"S": "x\udfff"}
    return odd


def test_file_dead_letter_of_a_lone_surrogate_lists_and_redrives_intact(stack: Stack) -> None:
    """The dead letter of a lone-surrogate record lists with its reason and survives a redrive."""
    # given a record with a lone surrogate in its key, dead-lettered by the handler to the file
    record = _surrogate_record(stack)
    assert stack.invoke([record]) == {"batchItemFailures": []}
    dead = Path(stack.config.deadletter.file or "")
    # when the dead letters are listed
    runner = CliRunner()
    listed = runner.invoke(main, ["deadletter", "list", "--config", str(stack.config_path)])
    # then the entry shows its reason, not UnreadableEntry
    assert "PoisonRecordError: key is not valid UTF-8 text" in listed.output, listed.output
    # when it is redriven
    redriven = runner.invoke(main, ["deadletter", "redrive", "--config", str(stack.config_path)])
    # then it is rejected again, the command exits 1, and the file holds its record exactly
    assert redriven.exit_code == 1, redriven.output
    assert "1 rejected again" in redriven.output
    (line,) = dead.read_bytes().splitlines()
    entry = orjson.loads(line)
    assert entry["error"]["class"] == "PoisonRecordError"
    assert entry_record(entry) == record
    assert json.loads(entry["record_json"])["dynamodb"]["Keys"]["pk"]["S"] == "x\udfff"
