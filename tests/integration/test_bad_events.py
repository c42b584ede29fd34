"""Events that are not DynamoDB Streams or Kinesis batches fail whole in lambda_handler and change nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncer import handler
from syncer.errors import InvalidEventError
from tests.helpers import load_event
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

OTHER_SOURCES = load_event("other_sources.json")
SQS_RECORD = OTHER_SOURCES["sqs"]["Records"][0]
KINESIS_RECORD = OTHER_SOURCES["kinesis"]["Records"][0]


@dataclass
class Pending:
    """A valid stream record not yet delivered, and the cache key it would invalidate."""

    record: dict[str, Any]
    cache_key: str


@pytest.fixture
def pending(stack: Stack) -> Iterator[Pending]:
    """An item written to the table, its stream record, and its cache key set in Redis."""
    pk = f"bad-event-{stack.table}"
    stack.put({"pk": {"S": pk}, "sk": {"S": "v1"}, "name": {"S": "left alone"}})
    (record,) = stack.new_records()
    cache_key = f"product:{pk}"
    stack.sinks.redis.set(cache_key, "cached")
    yield Pending(record, cache_key)
    stack.sinks.redis.delete(cache_key)


def _deadletter_lines(stack: Stack) -> int:
    path = Path(stack.config.deadletter.file or "")
    return path.read_bytes().count(b"\n") if path.exists() else 0


BAD_EVENTS: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "empty-object": (lambda valid: {}, "has no 'Records'"),
    "records-not-a-list": (lambda valid: {"Records": "x"}, "'Records' is not a list"),
    "lowercase-records-key": (lambda valid: {"records": [valid]}, "has no 'Records'"),
    "bare-list-of-records": (lambda valid: [valid], "has no 'Records'"),
    "sqs-event": (lambda valid: OTHER_SOURCES["sqs"], "'aws:sqs', not aws:dynamodb"),
    "dynamodb-then-sqs": (
        lambda valid: {"Records": [valid, SQS_RECORD]},
        "record 1 comes from 'aws:sqs'",
    ),
    "kinesis-then-dynamodb": (
        lambda valid: {"Records": [KINESIS_RECORD, valid]},
        "record 1 is a DynamoDB Streams record but record 0 is a Kinesis record",
    ),
}


@pytest.mark.parametrize(("make_event", "message"), BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_an_event_that_is_not_a_dynamodb_batch_fails_whole_and_applies_nothing(
    stack: Stack, pending: Pending, make_event: Callable[[dict[str, Any]], Any], message: str
) -> None:
    """A malformed or foreign event raises InvalidEventError saying why, and changes nothing."""
    # given a valid record waiting in the stream, its cache key set, and the dead letters counted
    lines_before = _deadletter_lines(stack)
    # when an event that is not a DynamoDB Streams batch reaches the handler
    with pytest.raises(InvalidEventError) as raised:
        handler.lambda_handler(make_event(pending.record), None)
    # then the error says what is wrong, and no document, dead letter or invalidation happened
    assert message in str(raised.value)
    assert stack.indexed() == {}
    assert _deadletter_lines(stack) == lines_before
    assert stack.sinks.redis.exists(pending.cache_key) == 1


def test_an_event_with_no_records_succeeds_and_applies_nothing(
    stack: Stack, pending: Pending
) -> None:
    """An empty Records list returns an empty batchItemFailures list and changes nothing."""
    # given a valid record waiting in the stream and its cache key set
    lines_before = _deadletter_lines(stack)
    # when an event with an empty Records list reaches the handler
    response = handler.lambda_handler({"Records": []}, None)
    # then it succeeds with nothing to retry, and nothing changed
    assert response == {"batchItemFailures": []}
    assert stack.indexed() == {}
    assert _deadletter_lines(stack) == lines_before
    assert stack.sinks.redis.exists(pending.cache_key) == 1
