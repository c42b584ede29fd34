"""Dead letters in an SQS queue (moto's server): whole entries, truncated ones, a missing queue."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from syncer import handler
from syncer.errors import DownstreamUnavailableError
from syncer.sinks.deadletter import SQS_MAX_MESSAGE_BYTES
from tests.integration.conftest import MOTO_URL, Stack, use_deadletter_queue

pytestmark = pytest.mark.integration

UNCONFIGURED_TABLE = "unconfigured-table"


def _messages(sqs: Any, queue_url: str) -> list[str]:
    """Every message body in the queue."""
    bodies: list[str] = []
    while True:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
        )
        received = response.get("Messages", [])
        if not received:
            return bodies
        bodies.extend(message["Body"] for message in received)


def _from_unconfigured_table(stack: Stack, record: dict[str, Any], sequence: str) -> dict[str, Any]:
    """A copy of ``record`` as if it came from a table syncer is not configured for."""
    stranger = copy.deepcopy(record)
    stranger["eventSourceARN"] = record["eventSourceARN"].replace(
        f"table/{stack.table}/", f"table/{UNCONFIGURED_TABLE}/"
    )
    assert stranger["eventSourceARN"] != record["eventSourceARN"]
    stranger["dynamodb"]["SequenceNumber"] = sequence
    return stranger


def test_a_poison_record_lands_in_the_queue_as_one_whole_entry(
    stack: Stack, queue_url: str, sqs: Any
) -> None:
    """An unconfigured table's record becomes one message: table, sequence, error and record."""
    # given a stream record re-addressed to a table nobody configured
    stack.put({"pk": {"S": "stranger"}, "sk": {"S": "v1"}, "name": {"S": "x"}})
    (record,) = stack.new_records()
    stranger = _from_unconfigured_table(stack, record, "9" * 30)
    # when it goes through the Lambda handler
    response = handler.lambda_handler({"Records": [stranger]}, None)
    # then nothing is retried and the queue holds exactly one entry describing it
    assert response == {"batchItemFailures": []}
    (body,) = _messages(sqs, queue_url)
    entry = json.loads(body)
    assert entry["table"] == UNCONFIGURED_TABLE
    assert entry["sequence_number"] == "9" * 30
    assert entry["error"]["class"] == "PoisonRecordError"
    assert "not configured" in entry["error"]["message"]
    assert entry["record"] == stranger
    assert "truncated" not in entry


def test_a_poison_record_over_256_kb_lands_in_the_queue_truncated(
    stack: Stack, queue_url: str, sqs: Any
) -> None:
    """A dead letter too big for SQS keeps its metadata, drops the images and fits in 256 KB."""
    # given a stream record of a ~300 KB item, re-addressed to a table nobody configured
    stack.put({"pk": {"S": "big"}, "sk": {"S": "v1"}, "blob": {"S": "x" * 300_000}})
    (record,) = stack.new_records()
    stranger = _from_unconfigured_table(stack, record, "8" * 30)
    assert len(json.dumps(stranger)) > SQS_MAX_MESSAGE_BYTES
    # when it goes through the Lambda handler
    response = handler.lambda_handler({"Records": [stranger]}, None)
    # then the queue holds one entry within SQS's limit, marked truncated, without images
    assert response == {"batchItemFailures": []}
    (body,) = _messages(sqs, queue_url)
    assert len(body.encode("utf-8")) <= SQS_MAX_MESSAGE_BYTES
    entry = json.loads(body)
    assert entry["truncated"]
    assert entry["sequence_number"] == "8" * 30
    assert entry["error"]["class"] == "PoisonRecordError"
    assert entry["record"]["eventSourceARN"] == stranger["eventSourceARN"]
    assert entry["record"]["dynamodb"]["Keys"] == stranger["dynamodb"]["Keys"]
    assert "NewImage" not in entry["record"]["dynamodb"]
    assert "OldImage" not in entry["record"]["dynamodb"]


def test_several_large_poison_records_all_land_in_the_queue(
    stack: Stack, queue_url: str, sqs: Any
) -> None:
    """Five dead letters of ~240 KB each, together past SQS's batch limit, all reach the queue."""
    # given five records of ~240 KB items (each under the message limit), from an unknown table
    for number in range(5):
        stack.put({"pk": {"S": f"large-{number}"}, "sk": {"S": "v1"}, "blob": {"S": "y" * 240_000}})
    strangers = [
        _from_unconfigured_table(stack, record, str(10**29 + number))
        for number, record in enumerate(stack.new_records())
    ]
    # when they go through the Lambda handler in one batch
    response = handler.lambda_handler({"Records": strangers}, None)
    # then nothing is retried and the queue holds all five entries
    assert response == {"batchItemFailures": []}
    assert len(_messages(sqs, queue_url)) == len(strangers)


def test_a_missing_queue_reports_the_poison_record_for_retry(stack: Stack) -> None:
    """When the dead-letter queue does not exist the poison record is reported, never dropped."""
    # given dead letters pointed at a queue that does not exist
    use_deadletter_queue(stack, f"{MOTO_URL}/123456789012/syncer-missing-{uuid.uuid4().hex[:12]}")
    stack.put({"pk": {"S": "ok"}, "sk": {"S": "v1"}})
    stack.put({"pk": {"S": "stranger"}, "sk": {"S": "v1"}})
    ok, record = stack.new_records()
    stranger = _from_unconfigured_table(stack, record, "7" * 30)
    # when it goes through the Lambda handler next to a valid record
    response = handler.lambda_handler({"Records": [ok, stranger]}, None)
    # then Lambda is told to retry the poison record, and the valid one is applied
    assert response == {"batchItemFailures": [{"itemIdentifier": "7" * 30}]}
    assert set(stack.indexed()) == {"ok|v1"}


def test_a_missing_queue_fails_the_batch_for_a_record_without_sequence_number(
    stack: Stack,
) -> None:
    """A record with no usable SequenceNumber that cannot be dead-lettered fails the whole batch."""
    # given dead letters pointed at a queue that does not exist, and a record without a sequence
    use_deadletter_queue(stack, f"{MOTO_URL}/123456789012/syncer-missing-{uuid.uuid4().hex[:12]}")
    stack.put({"pk": {"S": "nameless"}, "sk": {"S": "v1"}})
    (record,) = stack.new_records()
    del record["dynamodb"]["SequenceNumber"]
    # when it goes through the Lambda handler, then the whole batch fails so Lambda retries it
    with pytest.raises(DownstreamUnavailableError, match="could not be dead-lettered"):
        handler.lambda_handler({"Records": [record]}, None)
