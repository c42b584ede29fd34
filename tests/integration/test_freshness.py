"""Read-your-writes on the real services: wait until search shows a write syncer applied."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from syncer.freshness import (
    AttributeEquals,
    Deleted,
    WrittenAt,
    wait_until_visible,
    wait_until_visible_async,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _item(pk: str, name: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "name": {"S": name}, "category": {"S": "hats"}}


def _deliver_later(stack: Stack, delay_s: float) -> threading.Thread:
    """Deliver the stream's new records through the handler after ``delay_s``, on a thread."""

    def deliver() -> None:
        time.sleep(delay_s)
        stack.deliver()

    thread = threading.Thread(target=deliver)
    thread.start()
    return thread


def test_waiting_returns_once_search_shows_the_written_attribute(stack: Stack) -> None:
    """A write becomes visible after syncer applies it and the index refreshes; not before."""
    # given an item written, with syncer about to apply it half a second later
    stack.put(_item("rw", "first"))
    stack.deliver()
    stack.put(_item("rw", "second"))
    delivery = _deliver_later(stack, 0.5)
    # when the application waits for its write
    result = wait_until_visible(
        stack.sinks.opensearch,
        stack.index,
        "rw|v1",
        AttributeEquals("name", "second"),
        timeout_s=10,
    )
    delivery.join()
    # then it is visible, after more than one search, and search agrees
    assert result.visible, result.reason
    assert result.searches > 1
    assert result.waited_s >= 0.5


def test_a_write_time_identifies_the_write(stack: Stack) -> None:
    """WrittenAt taken just before the write is met by the document that write produced."""
    written_at_ms = int(time.time() * 1000)
    stack.put(_item("at", "timed"))
    delivery = _deliver_later(stack, 0.2)
    result = wait_until_visible(
        stack.sinks.opensearch, stack.index, "at|v1", WrittenAt(written_at_ms), timeout_s=10
    )
    delivery.join()
    assert result.visible, result.reason
    assert result.source is not None
    assert result.source["name"] == "timed"


def test_a_delete_is_visible_when_search_no_longer_finds_the_item(stack: Stack) -> None:
    """Deleted() waits until the document is gone from search (the alias hides tombstones)."""
    stack.put(_item("del", "doomed"))
    stack.deliver()
    stack.delete("del", "v1")
    delivery = _deliver_later(stack, 0.2)
    result = wait_until_visible(stack.sinks.opensearch, stack.index, "del|v1", Deleted())
    delivery.join()
    assert result.visible, result.reason


def test_a_write_syncer_never_applies_times_out_with_a_clear_reason(stack: Stack) -> None:
    """Without delivery the wait ends at its timeout, saying what search showed."""
    stack.put(_item("late", "v1 name"))
    stack.deliver()
    client, alias = stack.sinks.opensearch, stack.index
    assert wait_until_visible(client, alias, "late|v1", AttributeEquals("name", "v1 name"))
    stack.put(_item("late", "never applied"))
    result = wait_until_visible(
        stack.sinks.opensearch,
        stack.index,
        "late|v1",
        AttributeEquals("name", "never applied"),
        timeout_s=0.6,
        poll_s=0.1,
    )
    assert not result.visible
    assert result.waited_s >= 0.6
    assert "name is 'v1 name', not 'never applied'" in result.reason


class _AsyncSearch:
    """An awaitable search over the real client (opensearch-py's async client needs aiohttp)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def search(self, **request: Any) -> Any:
        return await asyncio.to_thread(self.client.search, **request)


def test_the_async_twin_waits_the_same_way(stack: Stack) -> None:
    """wait_until_visible_async awaits the searches and gives the same result."""
    stack.put(_item("async", "awaited"))
    delivery = _deliver_later(stack, 0.3)
    result = asyncio.run(
        wait_until_visible_async(
            _AsyncSearch(stack.sinks.opensearch),
            stack.index,
            "async|v1",
            AttributeEquals("name", "awaited"),
            timeout_s=10,
        )
    )
    delivery.join()
    assert result.visible, result.reason
