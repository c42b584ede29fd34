"""Failure handling on the real services: what is an outage, what is a bug, and time (issue 11).

Each test reproduces a case where the code before this change acknowledged a record whose
effect was not durable, or overran Lambda's time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer import handler
from syncer.commands.verify import verify_table
from syncer.errors import BatchFailedError
from tests.integration.conftest import OPENSEARCH_URL, Stack, free_port, write_config
from tests.integration.faults import opensearch_proxy

pytestmark = pytest.mark.integration


def _item(pk: str, price: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "category": {"S": "shoes"},
        "price": price or {"N": "10"},
    }


def _point_at(stack: Stack, **sections: str) -> None:
    write_config(stack.config_path, stack.table, stack.index, **sections)
    handler.reset_container()


def _dead_letters(stack: Stack) -> list[dict[str, Any]]:
    path = Path(stack.config.deadletter.file or "")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _reported(response: dict[str, Any]) -> set[str]:
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


class _Context:
    """The part of Lambda's context object the handler reads."""

    def __init__(self, remaining_s: float) -> None:
        self.ends = time.monotonic() + remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)


def test_write_blocked_index_keeps_the_records(stack: Stack) -> None:
    """A write block (403 cluster_block_exception) is an outage: records are retried, not lost.

    On the old code every record went to the dead letters and the batch was acknowledged.
    """
    # given an index with index.blocks.write set by an operator
    stack.put(_item("blocked"))
    records = stack.new_records()
    client = stack.sinks.opensearch
    client.indices.put_settings(index=f"{stack.index}-*", body={"index.blocks.write": True})
    try:
        # when the batch is delivered
        response = stack.invoke(records)
    finally:
        client.indices.put_settings(index=f"{stack.index}-*", body={"index.blocks.write": False})
    # then every record is reported for retry and none is dead-lettered
    assert _reported(response) == {r["dynamodb"]["SequenceNumber"] for r in records}
    assert _dead_letters(stack) == []
    # and once the block is lifted the retry indexes it
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert stack.indexed() == stack.scanned()


def test_a_bug_in_the_apply_step_fails_the_invocation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception no failure table knows (a bug) propagates: nothing acknowledged or dead-lettered.

    On the old code it was logged as "OpenSearch write failed" and handled like an outage.
    """
    # given a planning step with a bug
    stack.put(_item("bug"))
    records = stack.new_records()

    def broken(*_: object, **__: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("syncer.core.planners.plan_write", broken)
    # when the batch is delivered
    # then the invocation fails with the bug itself
    with pytest.raises(KeyError, match="a bug"):
        handler.lambda_handler({"Records": records}, None)
    assert _dead_letters(stack) == []


def test_a_rejected_document_still_waits_for_its_invalidation(stack: Stack) -> None:
    """With Redis down, a record whose document OpenSearch rejects is retried, not dead-lettered.

    Its cache keys must be invalidated before it is acknowledged through the dead letters. On
    the old code it was dead-lettered (and acknowledged) while its cache stayed stale.
    """
    # given a price field mapped as a number, and an item whose price is text
    stack.put(_item("num"))
    stack.deliver()
    stack.put(_item("text", price={"S": "not a number"}))
    records = stack.new_records()
    stack.sinks.redis.set("product:text", "stale")
    # when it is delivered while Redis is down
    _point_at(stack, redis=f'[redis]\nurl = "redis://127.0.0.1:{free_port()}/0"\n')
    response = stack.invoke(records)
    # then it is reported for retry and not dead-lettered
    assert _reported(response) == {r["dynamodb"]["SequenceNumber"] for r in records}
    assert _dead_letters(stack) == []
    # and with Redis back it is dead-lettered with its reason and its cache key is cleared
    _point_at(stack)
    assert stack.invoke(records) == {"batchItemFailures": []}
    (letter,) = _dead_letters(stack)
    assert letter["error"]["class"] == "DocumentRejectedError"
    assert stack.sinks.redis.exists("product:text") == 0


def test_the_handler_returns_before_lambdas_deadline_when_opensearch_stalls(stack: Stack) -> None:
    """Every request is bounded by the time left, so failures are reported before Lambda ends.

    With OpenSearch stalled for 30 s and 8 s left, the old code waited out its 30 s timeout.
    """
    stack.put(_item("slow"))
    records = stack.new_records()
    with opensearch_proxy(OPENSEARCH_URL) as proxy:
        proxy.mode = "stall"
        proxy.stall_s = 30.0
        _point_at(stack, opensearch=f'[opensearch]\nurl = "{proxy.url}"\n')
        started = time.monotonic()
        with pytest.raises(Exception, match="every one of the batch"):
            handler.lambda_handler({"Records": records}, _Context(remaining_s=8.0))
        elapsed = time.monotonic() - started
        proxy.mode = "pass"
    assert elapsed < 8.0


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_the_handler_returns_before_lambdas_deadline_when_sqs_never_answers(
    stack: Stack, silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead-letter queue that accepts and never answers cannot hold the invocation past its time.

    With 20 s left the old code took about 60 s (botocore's read timeout).
    """
    # given an SQS endpoint that never answers and a record that must be dead-lettered
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", silent_endpoint)
    _point_at(
        stack,
        deadletter='[deadletter]\nsqs_queue_url = "http://127.0.0.1/123456789012/dlq"\n',
    )
    stack.put(_item("poison"))
    (record,) = stack.new_records()
    record["eventSourceARN"] = record["eventSourceARN"].replace(stack.table, "not-configured")
    # when the batch is delivered with 20 s left
    started = time.monotonic()
    with pytest.raises(Exception, match="every one of the batch"):
        handler.lambda_handler({"Records": [record]}, _Context(remaining_s=20.0))
    # then it came back in time, the record reported
    assert time.monotonic() - started < 20.0


def test_verify_holds_only_the_drift_in_memory(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify walks table and index a page at a time and keeps keys only of drifted documents.

    The old code kept a fingerprint and a typed key of every item of the table.
    """
    # given 30 items, all indexed, and verify's pages of 7
    for number in range(30):
        stack.put(_item(f"m{number}"))
    stack.deliver()
    monkeypatch.setattr("syncer.commands.verify.PAGE_SIZE", 7)
    # when the table is verified
    report = verify_table(stack.config, stack.sinks, stack.table)
    # then all were checked and nothing is held but the (empty) drift
    assert (report.checked_items, report.checked_documents, report.drift) == (30, 30, 0)
    assert report.typed_keys == {}


def test_a_batch_whose_every_record_failed_fails_the_invocation(stack: Stack) -> None:
    """Every record failed: the invocation fails, so the function-errors alarm fires.

    On the old code the handler returned every record in batchItemFailures and succeeded.
    """
    # given OpenSearch unreachable
    stack.put(_item("all-fail"))
    records = stack.new_records()
    _point_at(stack, opensearch=f'[opensearch]\nurl = "http://127.0.0.1:{free_port()}"\n')
    # when the batch is delivered, then the invocation fails with the reason
    with pytest.raises(BatchFailedError, match="every one of the batch's 1 records failed"):
        handler.lambda_handler({"Records": records}, None)
