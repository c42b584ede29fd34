"""When OpenSearch or Redis is unreachable, the handler reports records as failed, never success."""

from __future__ import annotations

import pytest

from syncer import handler
from tests.integration.conftest import (
    BOTH_REDIS_TOPOLOGIES,
    REDIS_URL,
    Stack,
    free_port,
    write_config,
)

pytestmark = pytest.mark.integration


def _item(pk: str) -> dict[str, object]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": "shoes"}}


def _point_at(stack: Stack, **sections: str) -> None:
    write_config(stack.config_path, stack.table, stack.index, stack.config.redis.url, **sections)
    handler.reset_container()


def test_opensearch_down_reports_every_record(stack: Stack) -> None:
    """With OpenSearch refusing connections, every record is in batchItemFailures."""
    stack.put(_item("a"))
    stack.put(_item("b"))
    records = stack.new_records()
    _point_at(stack, opensearch=f'[opensearch]\nurl = "http://127.0.0.1:{free_port()}"\n')
    response = stack.invoke(records)
    reported = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert reported == {r["dynamodb"]["SequenceNumber"] for r in records}


@BOTH_REDIS_TOPOLOGIES
def test_redis_down_reports_every_record_and_a_retry_completes(
    stack: Stack, redis_url: str
) -> None:
    """With Redis down the records fail; delivered again with Redis up, they succeed."""
    stack.put(_item("c"))
    records = stack.new_records()
    stack.sinks.redis.set("product:c", "stale")
    # a cluster client (cluster = true) reaching no node must fail as transient, not fatal
    kind = "" if redis_url == REDIS_URL else "cluster = true\n"
    _point_at(stack, redis=f'[redis]\nurl = "redis://127.0.0.1:{free_port()}/0"\n{kind}')
    response = stack.invoke(records)
    assert len(response["batchItemFailures"]) == len(records)
    assert stack.sinks.redis.get("product:c") == b"stale"
    _point_at(stack)
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert stack.sinks.redis.exists("product:c") == 0
    assert stack.indexed() == stack.scanned()
