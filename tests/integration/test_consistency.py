"""Consistency checks on the real services, with faults injected behind syncer's back."""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from syncer import handler
from syncer.client.cachefill import LeasedCache
from syncer.config import Config
from syncer.config.consistency import ConsistencyConfig
from syncer.consistency.check import run_checks, sample_batch
from syncer.consistency.inprocess import InProcessChecker
from syncer.consistency.report import ConsistencyMetrics
from syncer.core.consistency import CheckKind, CheckResult
from syncer.core.outcome import BatchOutcome
from syncer.obs.metrics import PrometheusMetrics
from syncer.pipeline import process_batch
from tests.integration.conftest import REDIS_URL, Stack, free_port, write_config
from tests.integration.routed_catalog import RoutedCatalog, product, review, routed_catalog

pytestmark = pytest.mark.integration


def _every_key(config: Config, **settings: Any) -> Config:
    return dataclasses.replace(config, consistency=ConsistencyConfig(1.0, **settings))


def _item(pk: str, name: str = "boot", category: str = "shoes") -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "name": {"S": name},
        "category": {"S": category},
        "price": {"N": "19.99"},
        "cost": {"N": "7"},
    }


def _apply(stack: Stack) -> BatchOutcome:
    """Deliver the new stream records to process_batch, as one batch."""
    records = stack.new_records()
    outcome = process_batch(records, stack.config, stack.sinks)
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in records)
    assert outcome.failed_sequence_numbers == ()
    return outcome


def _check_all(stack: Stack, outcome: BatchOutcome) -> list[CheckResult]:
    config = _every_key(stack.config)
    return run_checks(sample_batch(outcome.written, config, random.Random(1)), config, stack.sinks)


@pytest.fixture
def cache_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def _forget_cache_keys(client: redis.Redis, outcome: BatchOutcome) -> None:
    keys = {key for written in outcome.written for key in written.cache_keys}
    if keys:
        client.unlink(*keys)


def test_a_clean_history_counts_checks_and_no_violations(stack: Stack) -> None:
    """Inserts, an update and a delete, all applied: every check is ok."""
    # given items written, changed and deleted, and applied by syncer
    for n in range(5):
        stack.put(_item(f"clean-{n}"))
    stack.put(_item("clean-1", name="new boot"))
    stack.delete("clean-2", "v1")
    outcome = _apply(stack)
    assert 0 < outcome.freshness_ms_p50 <= outcome.freshness_ms_p99  # made -> acknowledged
    # when every written key is checked
    results = _check_all(stack, outcome)
    # then each was checked once and none found a violation
    assert sorted(r.sample.document_id for r in results) == [f"clean-{n}|v1" for n in range(5)]
    assert [r.violations for r in results] == [()] * 5
    assert {r.index for r in results} == {CheckKind.OK}


def test_a_document_changed_behind_syncers_back_is_counted_once(stack: Stack) -> None:
    """An edit of one indexed document in OpenSearch is one content_differs, in the figures too."""
    # given three items applied by syncer, and one document then edited directly in OpenSearch
    for n in range(3):
        stack.put(_item(f"edit-{n}"))
    outcome = _apply(stack)
    stack.sinks.opensearch.update(
        index=stack.index, id="edit-1|v1", body={"doc": {"name": "edited by hand"}}
    )
    # when the in-process checker checks every written key, its counters in a Prometheus registry
    metrics = PrometheusMetrics()
    config = _every_key(stack.config, check_after_s=0.2)
    checker = InProcessChecker(config, stack.sinks, ConsistencyMetrics(metrics.registry).observe)
    try:
        checker.observe_batch(outcome)
        assert checker.wait_idle(20)
    finally:
        checker.close()
    # then three checks, exactly one violation, of that kind, on /metrics as well
    assert checker.totals["checks"] == 3
    assert checker.totals["content_differs"] == 1
    assert sum(checker.totals[kind.value] for kind in CheckKind if kind.is_violation) == 1
    text = metrics.exposition().decode()
    assert "syncer_consistency_checks_total 3.0" in text
    assert 'syncer_consistency_violations_total{kind="content_differs"} 1.0' in text
    assert 'syncer_consistency_violations_total{kind="index_missing"} 0.0' in text


def test_a_violation_is_logged_with_key_versions_and_kind(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A document deleted behind syncer's back gives one log line naming both versions."""
    stack.put(_item("gone"))
    outcome = _apply(stack)
    stack.sinks.opensearch.delete(index=stack.index, id="gone|v1", params={"refresh": "true"})
    from syncer.consistency.report import log_violations

    with caplog.at_level("WARNING", logger="syncer.consistency"):
        log_violations(_check_all(stack, outcome))
    # Only the checker's lines: when an earlier test left syncer's loggers at INFO, the batch's
    # own "batch done" line was captured too and the test failed by file order alone.
    (line,) = [r for r in caplog.records if r.name.startswith("syncer.consistency")]
    assert line.kind == "index_missing"  # type: ignore[attr-defined]
    assert line.key == "gone|v1"  # type: ignore[attr-defined]
    assert line.written_version["seq"]  # type: ignore[attr-defined]
    assert line.indexed_version is None  # type: ignore[attr-defined]


def test_a_cache_value_filled_before_an_invalidation_is_cache_stale(
    stack: Stack, cache_client: redis.Redis
) -> None:
    """A LeasedCache value loaded before a change, back after its invalidation, is cache_stale."""
    # given product:p1 filled through LeasedCache with the item as it was
    stack.put(_item("stale"))
    _forget_cache_keys(cache_client, _apply(stack))
    cache = LeasedCache(cache_client)
    assert cache.get_or_fill("product:stale", lambda: b"boot at 19.99") == b"boot at 19.99"
    filled = cache_client.get("product:stale")
    assert filled is not None
    # and the item changed seconds later (past the clock uncertainty), and applied by syncer
    time.sleep(2.2)
    stack.put(_item("stale", name="renamed boot"))
    outcome = _apply(stack)
    assert cache_client.get("product:stale") is None  # invalidated
    # when the invalidation is lost: the old entry comes back (a replica that missed UNLINK)
    cache_client.set("product:stale", filled)
    results = _check_all(stack, outcome)
    # then the check finds that key stale, and the index fine
    (result,) = results
    assert result.index is CheckKind.OK
    assert result.cache is CheckKind.CACHE_STALE
    assert result.stale_cache_keys == ("product:stale",)


def test_a_cache_value_filled_after_the_change_is_fine(
    stack: Stack, cache_client: redis.Redis
) -> None:
    """A value LeasedCache loads after the invalidation is not stale."""
    stack.put(_item("fresh"))
    outcome = _apply(stack)
    LeasedCache(cache_client).get_or_fill("product:fresh", lambda: b"boot")
    (result,) = _check_all(stack, outcome)
    assert result.violations == ()
    _forget_cache_keys(cache_client, outcome)


def _sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Received SQS messages in the shape Lambda's SQS event source delivers them."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def _receive_all(sqs: Any, queue_url: str, expected: int, timeout_s: float = 15) -> list[Any]:
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages.extend(got.get("Messages", []))
    return messages


def _emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def test_lambda_checks_go_through_sqs_to_the_checker_handler(
    stack: Stack, sqs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stream handler queues samples with a delay; the checker handler checks SQS records."""
    # given a queue for checks, every key sampled, checks due one second after the batch
    queue_url = sqs.create_queue(QueueName=f"syncer-checks-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    consistency = (
        f'[consistency]\nsample_rate = 1.0\ncheck_after_s = 1\nqueue_url = "{queue_url}"\n'
    )
    write_config(stack.config_path, stack.table, stack.index, consistency=consistency)
    handler.reset_container()
    try:
        # when three items go through the stream handler, and one document is then edited by hand
        for n in range(3):
            stack.put(_item(f"sqs-{n}"))
        assert stack.deliver() == [{"batchItemFailures": []}]
        scheduled = [d for d in _emf_lines(capsys.readouterr().out) if "ConsistencyScheduled" in d]
        assert [d["ConsistencyScheduled"] for d in scheduled] == [3]
        stack.sinks.opensearch.update(
            index=stack.index, id="sqs-2|v1", body={"doc": {"name": "edited by hand"}}
        )
        messages = _receive_all(sqs, queue_url, 3)
        assert len(messages) == 3
        # and the checker handler gets them as an SQS event, with two records that are no checks
        event = _sqs_event(messages, queue_arn)
        event["Records"].append({**event["Records"][0], "messageId": "junk", "body": "{not json"})
        elsewhere = {**json.loads(messages[0]["Body"]), "table": "not-configured"}
        event["Records"].append(
            {**event["Records"][0], "messageId": "other", "body": json.dumps(elsewhere)}
        )
        response = handler.consistency_check_handler(event, None)
    finally:
        handler.reset_container()
        sqs.delete_queue(QueueUrl=queue_url)
    # then nothing is retried, three checks ran, one violation of that kind, two malformed
    assert response == {"batchItemFailures": []}
    lines = _emf_lines(capsys.readouterr().out)
    head = next(d for d in lines if "ConsistencyChecks" in d)
    assert (head["ConsistencyChecks"], head["ConsistencyMalformed"]) == (3, 2)
    violations = {d["kind"]: d["ConsistencyViolations"] for d in lines if "kind" in d}
    assert violations["content_differs"] == 1
    assert sum(violations.values()) == 1


def test_a_check_that_cannot_read_is_retried_by_sqs(stack: Stack) -> None:
    """When OpenSearch cannot be reached during a check, the message is reported for redelivery."""
    # given a sampled write, and the checker's OpenSearch pointed at a port nothing listens on
    stack.put(_item("retry"))
    outcome = _apply(stack)
    (sample,) = sample_batch(outcome.written, _every_key(stack.config), random.Random())
    event = {"Records": [{"messageId": "m1", "body": json.dumps(sample.to_message())}]}
    down = f'[opensearch]\nurl = "http://127.0.0.1:{free_port()}"\ntimeout_s = 0.5\n'
    write_config(stack.config_path, stack.table, stack.index, opensearch=down)
    handler.reset_container()
    # when the checker handler gets it
    response = handler.consistency_check_handler(event, None)
    # then SQS is asked to deliver it again
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_many_samples_go_out_in_batches_of_ten_side_by_side(stack: Stack, sqs: Any) -> None:
    """25 samples are 3 SendMessageBatch calls; every one arrives, none is refused."""
    from syncer.consistency.queue import send_samples

    for n in range(25):
        stack.put(_item(f"many-{n}"))
    outcome = _apply(stack)
    samples = sample_batch(outcome.written, _every_key(stack.config), random.Random())
    queue_url = sqs.create_queue(QueueName=f"syncer-checks-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    try:
        assert send_samples(sqs, queue_url, samples, delay_s=0) == 0
        received = _receive_all(sqs, queue_url, 25)
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
    ids = sorted(json.loads(m["Body"])["id"] for m in received)
    assert ids == sorted(f"many-{n}|v1" for n in range(25))


@pytest.fixture
def catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view_type: str
) -> Iterator[RoutedCatalog]:
    yield from routed_catalog(tmp_path, monkeypatch, view_type)


def test_routed_tables_are_checked_in_the_index_of_each_items_route(
    catalog: RoutedCatalog,
) -> None:
    """A transformed product, a review and a product moved to no route are all checked ok."""
    # given a product (transformed), a review, and a product hidden by the transform after all
    stack = catalog.stack
    for item in (product("p1"), review("p1", 1), product("p2")):
        stack.put(item)
    _apply(stack)
    stack.put(product("p2", hidden={"BOOL": True}))
    stack.put(product("p1", category="boots"))
    outcome = _apply(stack)
    # when every written key is checked
    results = _check_all(stack, outcome)
    # then each was looked for in its route's index and found as syncer wrote it
    checked = {(r.sample.index, r.sample.document_id): r.violations for r in results}
    assert checked == {
        (catalog.aliases["products"], "PRODUCT\\#p1|PRODUCT\\#p1"): (),
        (catalog.aliases["products"], "PRODUCT\\#p2|PRODUCT\\#p2"): (),
    }
    # and an edit of the transformed document behind syncer's back is found
    stack.sinks.opensearch.update(
        index=catalog.aliases["products"],
        id="PRODUCT\\#p1|PRODUCT\\#p1",
        body={"doc": {"search_name": "edited"}},
    )
    kinds = sorted(k.value for r in _check_all(stack, outcome) for k in r.violations)
    assert kinds == ["content_differs"]
