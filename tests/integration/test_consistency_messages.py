"""The checker function's SQS messages: a malformed one never holds back the good ones beside it."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from syncer.config import Config, load_config
from syncer.config.consistency import ConsistencyConfig
from syncer.consistency.check import sample_batch
from syncer.consistency.queue import handle_check_event
from syncer.errors import ConfigError
from syncer.pipeline import process_batch
from syncer.sinks.build import build_sinks
from tests.integration.conftest import REDIS_CLUSTER_URL, Stack, write_config

pytestmark = pytest.mark.integration


def _every_key(config: Config) -> Config:
    return dataclasses.replace(config, consistency=ConsistencyConfig(1.0))


def _good_messages(stack: Stack, count: int) -> list[dict[str, Any]]:
    """``count`` items written through the pipeline, each sampled: the checks' messages."""
    for n in range(count):
        stack.put(
            {"pk": {"S": f"msg-{n}"}, "sk": {"S": "v1"}, "name": {"S": "boot"}, "price": {"N": "2"}}
        )
    records = stack.new_records()
    outcome = process_batch(records, stack.config, stack.sinks)
    assert outcome.failed_sequence_numbers == ()
    samples = sample_batch(outcome.written, _every_key(stack.config), random.Random(1))
    return sorted((s.to_message() for s in samples), key=lambda m: m["id"])


def _event(bodies: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": message_id, "body": body if isinstance(body, str) else json.dumps(body)}
            for message_id, body in bodies
        ]
    }


def _with_keys(message: dict[str, Any], keys: Any, **changes: Any) -> dict[str, Any]:
    return {**message, "keys": keys, **changes}


@pytest.mark.parametrize(
    "bad_keys",
    [
        pytest.param({"pk": "msg-0", "sk": "v1"}, id="not-dynamodb-typed"),
        pytest.param({"pk": {"S": "msg-0", "N": "1"}, "sk": {"S": "v1"}}, id="two-type-tags"),
        pytest.param({"other": {"S": "msg-0"}}, id="not-the-key-schema"),
        pytest.param({"pk": {"N": "1"}, "sk": {"S": "v1"}}, id="wrong-key-type"),
        pytest.param({"pk": {"S": "msg-0"}}, id="half-a-key"),
        pytest.param(
            {"pk": {"S": "msg-0"}, "sk": {"S": "v1"}, "name": {"S": "x"}}, id="extra-attribute"
        ),
        pytest.param({}, id="empty-keys"),
        pytest.param({"pk": {"S": ""}, "sk": {"S": "v1"}}, id="empty-key-value"),
        pytest.param({"pk": {"N": "not a number"}, "sk": {"S": "v1"}}, id="bad-number"),
        pytest.param({"pk": {"S": "someone-else"}, "sk": {"S": "v1"}}, id="keys-of-another-id"),
        pytest.param({"pk": {"S": "msg-1"}, "sk": {"S": "v1"}}, id="same-key-as-the-next-message"),
    ],
)
def test_a_message_with_bad_keys_is_malformed_and_the_good_ones_are_checked(
    stack: Stack, bad_keys: Any
) -> None:
    """Each kind of bad key is counted as malformed, not retried; the good checks beside it run."""
    good = _good_messages(stack, 2)
    event = _event(
        [("good-0", good[0]), ("bad", _with_keys(good[0], bad_keys)), ("good-1", good[1])]
    )
    response, counts = handle_check_event(event, stack.config, stack.sinks)
    assert response == {"batchItemFailures": []}
    assert counts["malformed"] == 1
    assert counts["checks"] == 2
    assert counts.get("errors", 0) == 0


def test_two_messages_of_one_key_are_both_checked(stack: Stack) -> None:
    """SQS can deliver a message twice and a key can be sampled twice: one read, two checks."""
    good = _good_messages(stack, 1)
    event = _event([("first", good[0]), ("again", good[0]), ("same-key", dict(good[0]))])
    response, counts = handle_check_event(event, stack.config, stack.sinks)
    assert response == {"batchItemFailures": []}
    assert (counts["checks"], counts["malformed"]) == (3, 0)
    assert sum(v for k, v in counts.items() if k.startswith("violation")) == 0


def test_every_kind_of_malformed_message_together_holds_back_nothing(stack: Stack) -> None:
    """A batch mixing bad JSON, another format, bad keys and duplicates: good ones all checked."""
    good = _good_messages(stack, 3)
    event = _event(
        [
            ("g0", good[0]),
            ("json", "{not json"),
            ("format", {**good[1], "format": 99}),
            ("untyped", _with_keys(good[1], {"pk": "msg-1", "sk": "v1"})),
            ("g1", good[1]),
            ("schema", _with_keys(good[2], {"id": {"S": "msg-2"}})),
            ("dup", good[1]),
            ("list-body", [1, 2]),
            ("g2", good[2]),
        ]
    )
    response, counts = handle_check_event(event, stack.config, stack.sinks)
    assert response == {"batchItemFailures": []}
    assert (counts["checks"], counts["malformed"]) == (4, 5)


def test_a_database_number_on_a_redis_cluster_fails_the_checker_fast(stack: Stack) -> None:
    """The checker raises the ConfigError (as the stream function does) instead of returning its
    messages as failures for SQS to redeliver until the queue's retention ends."""
    good = _good_messages(stack, 2)
    cluster_db_1 = REDIS_CLUSTER_URL.rsplit("/", 1)[0] + "/1"
    write_config(stack.config_path, stack.table, stack.index, cluster_db_1)
    config = load_config(str(stack.config_path))
    sinks = build_sinks(config)
    try:
        with pytest.raises(ConfigError, match="database"):
            handle_check_event(_event([("a", good[0]), ("b", good[1])]), config, sinks)
    finally:
        sinks.close()
