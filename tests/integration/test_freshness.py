"""Read-your-writes on the real services: wait until search shows a write syncer applied."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
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


@pytest.fixture
def slow_opensearch() -> Iterator[str]:
    """A server that accepts connections and answers nothing for 3 s: OpenSearch 3 s away."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)  # read nothing, answer nothing; closed after 3 s
            threading.Timer(3.0, connection.close).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()
    for connection in held:
        connection.close()


def test_a_slow_search_cannot_carry_the_wait_past_its_timeout(slow_opensearch: str) -> None:
    """With OpenSearch 3 s away and timeout_s=0.5 the wait ends at 0.5 s, not after 3 s."""
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[slow_opensearch], timeout=10, max_retries=0)
    started = time.monotonic()
    result = wait_until_visible(client, "catalog", "p1|v1", Deleted(), timeout_s=0.5)
    elapsed = time.monotonic() - started
    client.close()
    assert not result.visible
    assert elapsed < 1.5, f"the wait took {elapsed:.2f} s"
    assert "did not answer in the time left" in result.reason


def test_the_async_wait_is_cancelled_at_its_deadline(slow_opensearch: str) -> None:
    """The async twin cancels the search it awaits once the time left runs out."""
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[slow_opensearch], timeout=10, max_retries=0)

    class NoTimeoutParameter(_AsyncSearch):
        """A client that ignores request_timeout: only the cancellation can end its search."""

        async def search(self, **request: Any) -> Any:
            request.pop("request_timeout")
            return await asyncio.to_thread(self.client.search, **request)

    async def timed() -> tuple[Any, float]:
        started = time.monotonic()
        result = await wait_until_visible_async(
            NoTimeoutParameter(client), "catalog", "p1|v1", Deleted(), timeout_s=0.5
        )
        return result, time.monotonic() - started  # asyncio.run then joins the search's thread

    result, elapsed = asyncio.run(timed())
    assert not result.visible
    assert elapsed < 1.5, f"the wait took {elapsed:.2f} s"
