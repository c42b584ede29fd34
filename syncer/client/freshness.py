"""Read your writes through search: wait until search shows the write an application just made.

After writing an item to DynamoDB, an application that is about to show search results (a list
page, a redirect after a save) can wait until search shows that write, or its delete
(docs/consistency.md, "Read-your-writes"). The write is named by what the application knows:

- ``AttributeEquals(name, value)``: the document holds ``value`` in ``name`` (a version
  counter or an ``updated_at`` the application wrote: exact);
- ``WrittenAt(epoch_ms)``: the document's change time (``_syncer.changed_at``, DynamoDB's
  ``ApproximateCreationDateTime``, whole seconds) is in or after the second of ``epoch_ms``,
  taken just before the write (two writes within a second cannot be told apart; a clock ahead
  of DynamoDB's makes a write look older, which ends in a time-out, never in a false yes);
- ``Deleted()``: search no longer finds the document.

Each look is one ``_search`` by id through the alias: what search shows, after its refresh, not
the realtime ``GET``. No import of opensearch-py: pass the client (sync or async) in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

SYNCER_FIELD = "_syncer"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class AttributeEquals:
    """The write set attribute ``name`` to ``value`` (compared as search returns it: JSON)."""

    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class WrittenAt:
    """The write was made at (just after) ``epoch_ms`` by the application's clock."""

    epoch_ms: int


@dataclass(frozen=True, slots=True)
class Deleted:
    """The write deleted the item."""


Expectation = AttributeEquals | WrittenAt | Deleted


@dataclass(frozen=True, slots=True)
class Visibility:
    """What waiting came to: ``visible``, or why not when the time ran out."""

    visible: bool
    waited_s: float
    searches: int
    reason: str  # what the last search showed
    source: Mapping[str, Any] | None = None  # the document the last search found, if any

    def __bool__(self) -> bool:
        return self.visible


def search_request(document_id: str) -> dict[str, Any]:
    """The ``_search`` body that finds one document by id (the alias hides tombstones)."""
    return {"query": {"ids": {"values": [document_id]}}, "size": 1}


def judge(response: Mapping[str, Any], expected: Expectation) -> tuple[bool, str, Any]:
    """Whether a search response shows the write: (shows it, why or why not, the source)."""
    hits = response.get("hits", {}).get("hits", [])
    source: Mapping[str, Any] | None = hits[0].get("_source") if hits else None
    if isinstance(expected, Deleted):
        return (
            source is None,
            "search finds no document" if source is None else ("search still finds the document"),
            source,
        )
    if source is None:
        return False, "search finds no document for the key yet", None
    if isinstance(expected, AttributeEquals):
        seen = source.get(expected.name)
        if seen == expected.value:
            return True, f"{expected.name} is {seen!r}", source
        return False, f"{expected.name} is {seen!r}, not {expected.value!r}", source
    changed_at = (source.get(SYNCER_FIELD) or {}).get("changed_at")
    second = expected.epoch_ms - expected.epoch_ms % 1000
    if isinstance(changed_at, int | float) and changed_at >= second:
        return True, f"changed_at {int(changed_at)} is in or after {second}", source
    return False, f"changed_at {changed_at!r} is before the write's second {second}", source


def wait_until_visible(
    client: Any,
    index: str,
    document_id: str,
    expected: Expectation,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    poll_s: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Visibility:
    """Search ``index`` (the alias) for ``document_id`` until it shows ``expected`` or time is up.

    ``client`` is an ``opensearchpy.OpenSearch``; searches raise what the client raises.
    """
    started = time.monotonic()
    searches = 0
    while True:
        response = client.search(index=index, body=search_request(document_id))
        searches += 1
        step = _after_search(response, expected, started, searches, timeout_s, poll_s)
        if isinstance(step, Visibility):
            return step
        sleep(step)


async def wait_until_visible_async(
    client: Any,
    index: str,
    document_id: str,
    expected: Expectation,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    poll_s: float = DEFAULT_POLL_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Visibility:
    """``wait_until_visible`` for ``opensearchpy.AsyncOpenSearch``: the searches are awaited."""
    started = time.monotonic()
    searches = 0
    while True:
        response = await client.search(index=index, body=search_request(document_id))
        searches += 1
        step = _after_search(response, expected, started, searches, timeout_s, poll_s)
        if isinstance(step, Visibility):
            return step
        await sleep(step)


def _after_search(
    response: Mapping[str, Any],
    expected: Expectation,
    started: float,
    searches: int,
    timeout_s: float,
    poll_s: float,
) -> Visibility | float:
    """The result once search shows the write or time is up; otherwise the sleep before the next."""
    shown, reason, source = judge(response, expected)
    waited = time.monotonic() - started
    if shown or waited >= timeout_s:
        if not shown:
            reason = f"not visible after {timeout_s:g} s ({searches} searches): {reason}"
        return Visibility(shown, waited, searches, reason, source)
    return min(poll_s, max(0.0, timeout_s - waited))
