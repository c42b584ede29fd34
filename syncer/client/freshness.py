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

Every argument is checked before the first search (``TypeError``/``ValueError`` naming it). A
wait ends by its own deadline, ``timeout_s`` after it began: each search is sent with
``request_timeout`` set to the time left (the async one is also cancelled then), and a search
that the deadline cuts short ends the wait as "not visible", never as a hang or a late answer.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "DEFAULT_POLL_S",
    "DEFAULT_TIMEOUT_S",
    "MAX_TIMEOUT_S",
    "MIN_POLL_S",
    "AttributeEquals",
    "Deleted",
    "Expectation",
    "Visibility",
    "WrittenAt",
    "wait_until_visible",
    "wait_until_visible_async",
]

SYNCER_FIELD = "_syncer"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_POLL_S = 0.2
# Looks closer together than this only load the cluster: a refresh is 1 s by default.
MIN_POLL_S = 0.05
# The longest wait a caller may ask for: a page waiting longer is a page that never shows.
MAX_TIMEOUT_S = 300.0
# WrittenAt takes epoch milliseconds: 10**11 ms is March 1973, 10**14 ms the year 5138. A value
# below is seconds (time.time() now is about 1.8 * 10**9), above it microseconds or nanoseconds.
# Either would make every document look new or none: refused rather than a wrong answer.
MIN_EPOCH_MS = 10**11
MAX_EPOCH_MS = 10**14
# A search sent with less time left than this still gets this long: a timeout of 0 means none.
MIN_REQUEST_TIMEOUT_S = 0.001
# Less time left than this after a pause: no search could answer in it, the wait ends. A search
# that times out with this little left was cut short by the deadline (timers are not exact).
LAST_SEARCH_S = 0.01

_monotonic = time.monotonic  # the clock of every deadline here (tests replace it)


def _json_value(value: object, name: str) -> None:
    """``value`` can be compared with what search returns (JSON, boto3's types), else an error."""
    if value is None or isinstance(value, bool | str | bytes | bytearray):
        return
    if isinstance(value, int | float | Decimal):
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise ValueError(f"{name} is {value!r}: search never holds a value equal to it")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} has a key of type {type(key).__name__}: JSON keys are str")
            _json_value(item, f"{name}[{key!r}]")
        return
    if isinstance(value, list | tuple | set | frozenset):
        for n, item in enumerate(value):
            _json_value(item, f"{name}[{n}]")
        return
    raise TypeError(
        f"{name} must be a value search can hold (None, bool, int, float, Decimal, str, bytes, "
        f"or a list, set or dict of them), not {type(value).__name__}"
    )


@dataclass(frozen=True, slots=True)
class AttributeEquals:
    """The write set attribute ``name`` to ``value``: compared as JSON, numbers by value.

    Numbers compare exactly as decimals (``Decimal("0.1")``, as boto3 gives them, equals the
    0.1 search returns; ``True`` never equals 1), sets as the sorted lists syncer indexes, bytes
    as their base64 text.
    """

    name: str
    value: Any

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"AttributeEquals name must be a str, not {type(self.name).__name__}")
        if not self.name:
            raise ValueError("AttributeEquals name must not be empty")
        _json_value(self.value, "AttributeEquals value")


@dataclass(frozen=True, slots=True)
class WrittenAt:
    """The write was made at (just after) ``epoch_ms`` by the application's clock.

    Milliseconds, e.g. ``time.time_ns() // 1_000_000``; seconds or microseconds are refused.
    """

    epoch_ms: int

    def __post_init__(self) -> None:
        ms = self.epoch_ms
        if isinstance(ms, bool) or not isinstance(ms, int):
            raise TypeError(
                f"WrittenAt epoch_ms must be an int of epoch milliseconds "
                f"(time.time_ns() // 1_000_000), not {type(ms).__name__}"
            )
        if ms < MIN_EPOCH_MS:
            raise ValueError(
                f"WrittenAt epoch_ms {ms} is before 1973 as milliseconds: it looks like seconds; "
                "pass milliseconds (time.time_ns() // 1_000_000)"
            )
        if ms >= MAX_EPOCH_MS:
            raise ValueError(
                f"WrittenAt epoch_ms {ms} is after the year 5000 as milliseconds: it looks like "
                "microseconds or nanoseconds; pass milliseconds (time.time_ns() // 1_000_000)"
            )


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


def _search_request(document_id: str) -> dict[str, Any]:
    """The ``_search`` body that finds one document by id (the alias hides tombstones)."""
    return {"query": {"ids": {"values": [document_id]}}, "size": 1}


def _as_decimal(number: int | float | Decimal) -> Decimal:
    # repr of a float is the shortest text that reads back as it: 0.1, not 0.1000000000000000055
    return number if isinstance(number, Decimal) else Decimal(repr(number))


def _same_json(seen: object, expected: object) -> bool:
    """Whether ``seen`` (a JSON value search returned) is ``expected`` (what the write set)."""
    if isinstance(expected, bool) or isinstance(seen, bool):
        return isinstance(expected, bool) and isinstance(seen, bool) and seen is expected
    if isinstance(expected, int | float | Decimal):
        if not isinstance(seen, int | float | Decimal):
            return False
        try:
            return _as_decimal(seen) == _as_decimal(expected)
        except InvalidOperation:  # a NaN or infinity search returned: equal to nothing
            return False
    if isinstance(expected, bytes | bytearray):
        return seen == base64.b64encode(bytes(expected)).decode("ascii")
    if isinstance(expected, Mapping):
        return (
            isinstance(seen, Mapping)
            and set(seen) == set(expected)
            and all(_same_json(seen[k], v) for k, v in expected.items())
        )
    if isinstance(expected, set | frozenset):
        return (
            isinstance(seen, list)
            and len(seen) == len(expected)
            and all(any(_same_json(s, e) for s in seen) for e in expected)
        )
    if isinstance(expected, list | tuple):
        return (
            isinstance(seen, list)
            and len(seen) == len(expected)
            and all(_same_json(s, e) for s, e in zip(seen, expected, strict=True))
        )
    return type(seen) is type(expected) and seen == expected


def _judge(response: Mapping[str, Any], expected: Expectation) -> tuple[bool, str, Any]:
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
        if _same_json(seen, expected.value):
            return True, f"{expected.name} is {seen!r}", source
        return False, f"{expected.name} is {seen!r}, not {expected.value!r}", source
    changed_at = (source.get(SYNCER_FIELD) or {}).get("changed_at")
    second = expected.epoch_ms - expected.epoch_ms % 1000
    if (
        isinstance(changed_at, int | float)
        and not isinstance(changed_at, bool)
        and changed_at >= second
    ):
        return True, f"changed_at {int(changed_at)} is in or after {second}", source
    return False, f"changed_at {changed_at!r} is before the write's second {second}", source


def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")


def _check_seconds(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be between {low:g} and {high:g} seconds, got {value!r}")
    return float(value)


def _check_arguments(
    client: object,
    index: object,
    document_id: object,
    expected: object,
    timeout_s: object,
    poll_s: object,
    sleep: object,
) -> None:
    """Every argument of ``wait_until_visible``, checked before any search: errors name it."""
    if not callable(getattr(client, "search", None)):
        raise TypeError(
            "client must be an opensearch-py client (OpenSearch or AsyncOpenSearch), "
            f"not {type(client).__name__}"
        )
    _check_text(index, "index")
    _check_text(document_id, "document_id")
    if not isinstance(expected, AttributeEquals | WrittenAt | Deleted):
        raise TypeError(
            "expected must be AttributeEquals(name, value), WrittenAt(epoch_ms) or Deleted(), "
            f"not {type(expected).__name__}"
        )
    if isinstance(timeout_s, int | float) and not isinstance(timeout_s, bool) and timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    _check_seconds(timeout_s, "timeout_s", 0.0, MAX_TIMEOUT_S)
    _check_seconds(poll_s, "poll_s", MIN_POLL_S, MAX_TIMEOUT_S)
    if not callable(sleep):
        raise TypeError(f"sleep must be callable, not {type(sleep).__name__}")


def _is_async_client(client: object) -> bool | None:
    """Whether ``client.search`` must be awaited; None when it cannot be told before calling it.

    opensearch-py wraps AsyncOpenSearch's coroutine methods in plain functions (its
    ``query_params`` decorator), so its classes' module tells, not ``iscoroutinefunction``.
    """
    if inspect.iscoroutinefunction(getattr(client, "search", None)):
        return True
    modules = [cls.__module__ for cls in type(client).__mro__]
    if any(module.startswith("opensearchpy._async") for module in modules):
        return True
    if any(module.startswith("opensearchpy") for module in modules):
        return False
    return None


def _not_awaited(response: object) -> Mapping[str, Any]:
    """A sync search's response; a coroutine means an async client reached the sync wait."""
    if inspect.isawaitable(response):
        close = getattr(response, "close", None)
        if callable(close):
            close()
        raise TypeError("client.search returned an awaitable: use wait_until_visible_async")
    if not isinstance(response, Mapping):
        raise TypeError(f"client.search returned {type(response).__name__}, not a response")
    return response


def _is_timeout(error: BaseException) -> bool:
    """A search that ran out of time: asyncio's or the socket's, or opensearch-py's."""
    return isinstance(error, TimeoutError) or any(
        cls.__name__ == "ConnectionTimeout" for cls in type(error).__mro__
    )


class _Wait:
    """One wait's deadline, count and last answer: what both loops share."""

    def __init__(self, expected: Expectation, timeout_s: float, poll_s: float) -> None:
        self.expected = expected
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.started = _monotonic()
        self.deadline = self.started + timeout_s
        self.searches = 0
        self.reason = "no search answered"
        self.source: Mapping[str, Any] | None = None

    def time_left(self) -> float:
        return self.deadline - _monotonic()

    def request_timeout(self) -> float:
        """The timeout of the next search: the time left, never more."""
        return max(MIN_REQUEST_TIMEOUT_S, self.time_left())

    def timed_out(self) -> Visibility:
        reason = f"not visible after {self.timeout_s:g} s ({self.searches} searches): {self.reason}"
        return Visibility(False, _monotonic() - self.started, self.searches, reason, self.source)

    def cut_short(self, error: BaseException) -> Visibility:
        """A search the deadline cut short: the wait's answer is "not visible"; else re-raise."""
        if not (_is_timeout(error) and self.time_left() < LAST_SEARCH_S):
            raise error
        cut = f"the last search did not answer in the time left ({type(error).__name__})"
        self.reason = cut if self.searches == 1 else f"{self.reason}; {cut}"
        return self.timed_out()

    def over(self) -> bool:
        """After a pause: too little time left for another search to answer."""
        return self.time_left() < LAST_SEARCH_S

    def after_search(self, response: Mapping[str, Any]) -> Visibility | float:
        """The result once search shows the write or time is up; else the sleep before the next."""
        shown, self.reason, self.source = _judge(response, self.expected)
        if shown:
            waited = _monotonic() - self.started
            return Visibility(True, waited, self.searches, self.reason, self.source)
        left = self.time_left()
        if left <= 0:
            return self.timed_out()
        return min(self.poll_s, left)


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

    ``client`` is an ``opensearchpy.OpenSearch``. ``timeout_s`` (0 to 300 s, not 0) bounds the
    whole wait, each search included; ``poll_s`` (0.05 s at least) is the pause between looks.
    Searches raise what the client raises, except a time-out at the deadline, which is the
    answer "not visible".
    """
    _check_arguments(client, index, document_id, expected, timeout_s, poll_s, sleep)
    if _is_async_client(client) is True:
        raise TypeError("client is an async client (AsyncOpenSearch): use wait_until_visible_async")
    wait = _Wait(expected, timeout_s, poll_s)
    body = _search_request(document_id)
    while True:
        wait.searches += 1
        try:
            response = client.search(index=index, body=body, request_timeout=wait.request_timeout())
        except Exception as error:  # noqa: BLE001 - re-raised unless the deadline cut it short
            return wait.cut_short(error)
        response = _not_awaited(response)
        step = wait.after_search(response)
        if isinstance(step, Visibility):
            return step
        sleep(step)
        if wait.over():
            return wait.timed_out()


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
    """``wait_until_visible`` for ``opensearchpy.AsyncOpenSearch``: the searches are awaited,
    and each is cancelled when the time left runs out."""
    _check_arguments(client, index, document_id, expected, timeout_s, poll_s, sleep)
    if _is_async_client(client) is False:
        raise TypeError("client is a synchronous client (OpenSearch): use wait_until_visible")
    wait = _Wait(expected, timeout_s, poll_s)
    body = _search_request(document_id)
    while True:
        wait.searches += 1
        left = wait.request_timeout()
        pending = client.search(index=index, body=body, request_timeout=left)
        if not inspect.isawaitable(pending):
            raise TypeError(
                f"client.search returned {type(pending).__name__}, not an awaitable: use "
                "wait_until_visible with a synchronous client"
            )
        try:
            response = await asyncio.wait_for(pending, timeout=left)
        except Exception as error:  # noqa: BLE001 - re-raised unless the deadline cut it short
            return wait.cut_short(error)
        step = wait.after_search(response)
        if isinstance(step, Visibility):
            return step
        await sleep(step)
        if wait.over():
            return wait.timed_out()
