"""Through the real handler: an empty key is dead-lettered alone; a REMOVE with an odd image still deletes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _dead_letters(stack: Stack) -> list[dict[str, Any]]:
    path = Path(stack.config.deadletter.file or "")
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("empty", [{"S": ""}, {"B": ""}], ids=["empty-string", "empty-binary"])
def test_a_record_with_an_empty_key_is_dead_lettered_alone(
    stack: Stack, empty: dict[str, str]
) -> None:
    """Next to a good record, an empty-key record goes to the dead letters and the good one is indexed."""
    # given a good stream record, and a copy of another whose partition key is empty
    stack.put({"pk": {"S": "good"}, "sk": {"S": "v1"}, "name": {"S": "g"}})
    stack.put({"pk": {"S": "other"}, "sk": {"S": "v1"}, "name": {"S": "o"}})
    good, other = stack.new_records()
    bad = copy.deepcopy(other)
    bad["dynamodb"]["Keys"]["pk"] = empty
    bad["dynamodb"]["NewImage"]["pk"] = empty
    # when both go through the Lambda handler in one batch
    response = stack.invoke([good, bad])
    # then nothing is retried, the good one is indexed, and the bad one is dead-lettered by reason
    assert response == {"batchItemFailures": []}
    assert set(stack.indexed()) == {"good|v1"}
    (entry,) = _dead_letters(stack)
    assert entry["sequence_number"] == bad["dynamodb"]["SequenceNumber"]
    assert entry["error"]["class"] == "PoisonRecordError"
    assert "key attribute 'pk' is empty" in entry["error"]["message"]


def test_a_remove_whose_old_image_has_an_unknown_type_still_deletes(stack: Stack) -> None:
    """A REMOVE carrying an attribute type syncer does not know makes the item unsearchable."""
    # given an indexed item, then deleted, whose REMOVE record's old image holds an unknown type
    stack.put({"pk": {"S": "gone"}, "sk": {"S": "v1"}, "category": {"S": "hats"}})
    stack.deliver()
    assert "gone|v1" in stack.indexed()
    stack.sinks.redis.set("category:hats", "cached")
    stack.delete("gone", "v1")
    (remove,) = stack.new_records()
    assert remove["eventName"] == "REMOVE"
    remove["dynamodb"]["OldImage"]["weird"] = {"X": "1"}
    # when it goes through the Lambda handler
    response = stack.invoke([remove])
    # then it is applied: the item is no longer searchable, its cache keys are gone, no dead letter
    assert response == {"batchItemFailures": []}
    assert "gone|v1" not in stack.indexed()
    assert stack.sinks.redis.exists("category:hats") == 0
    assert _dead_letters(stack) == []


def test_an_insert_with_an_unknown_type_is_still_dead_lettered(stack: Stack) -> None:
    """An INSERT carrying an unknown type goes to the dead letters and is not indexed."""
    # given an INSERT record whose new image holds an unknown type
    stack.put({"pk": {"S": "odd"}, "sk": {"S": "v1"}})
    (insert,) = stack.new_records()
    insert["dynamodb"]["NewImage"]["weird"] = {"X": "1"}
    # when it goes through the Lambda handler
    response = stack.invoke([insert])
    # then it is dead-lettered with the reason and not indexed
    assert response == {"batchItemFailures": []}
    assert "odd|v1" not in stack.indexed()
    (entry,) = _dead_letters(stack)
    assert "unknown attribute type 'X'" in entry["error"]["message"]


@pytest.mark.parametrize(
    "when",
    [float("nan"), float("inf"), 1e300, -5, "soon"],
    ids=["nan", "inf", "1e300", "-5", "soon"],
)
def test_a_record_with_an_unreadable_time_is_dead_lettered_alone(
    stack: Stack, when: object
) -> None:
    """A creation time that is NaN, infinite, out of range or not a number rejects that record only."""
    # given two stream records, the second with an unreadable ApproximateCreationDateTime
    stack.put({"pk": {"S": "on-time"}, "sk": {"S": "v1"}, "name": {"S": "g"}})
    stack.put({"pk": {"S": "no-time"}, "sk": {"S": "v1"}, "name": {"S": "o"}})
    good, bad = stack.new_records()
    bad["dynamodb"]["ApproximateCreationDateTime"] = when
    # when both go through the Lambda handler in one batch
    response = stack.invoke([good, bad])
    # then the batch is acknowledged: the good one indexed, the bad one dead-lettered with why
    assert response == {"batchItemFailures": []}
    assert set(stack.indexed()) == {"on-time|v1"}
    (entry,) = _dead_letters(stack)
    assert entry["sequence_number"] == bad["dynamodb"]["SequenceNumber"]
    assert entry["error"]["class"] == "PoisonRecordError"
    assert "ApproximateCreationDateTime" in entry["error"]["message"]
