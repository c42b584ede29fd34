"""Read-your-writes: what counts as search showing a write, and the waiting loop's result."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from syncer.client import freshness
from syncer.freshness import AttributeEquals, Deleted, WrittenAt, wait_until_visible


def _response(source: dict[str, Any] | None) -> dict[str, Any]:
    hits = [] if source is None else [{"_id": "p1", "_source": source}]
    return {"hits": {"hits": hits}}


CHANGED_AT_MS = 1_780_000_003_000  # ApproximateCreationDateTime: whole seconds


class FakeClock:
    """The freshness module's clock, moved on only by its ``sleep``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        monkeypatch.setattr(freshness, "_monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("source", "expected", "shown"),
    [
        pytest.param({"name": "new"}, AttributeEquals("name", "new"), True, id="attribute-set"),
        pytest.param({"name": "old"}, AttributeEquals("name", "new"), False, id="attribute-old"),
        pytest.param(None, AttributeEquals("name", "new"), False, id="attribute-no-document"),
        pytest.param(None, Deleted(), True, id="deleted-gone"),
        pytest.param({"name": "x"}, Deleted(), False, id="deleted-still-there"),
        pytest.param(
            {"_syncer": {"changed_at": CHANGED_AT_MS}},
            WrittenAt(CHANGED_AT_MS + 400),
            True,
            id="written-in-the-same-second",
        ),
        pytest.param(
            {"_syncer": {"changed_at": CHANGED_AT_MS - 1000}},
            WrittenAt(CHANGED_AT_MS + 400),
            False,
            id="written-the-second-before",
        ),
        pytest.param({"name": "x"}, WrittenAt(CHANGED_AT_MS), False, id="written-no-version"),
    ],
)
def test_what_shows_a_write(
    source: dict[str, Any] | None, expected: Any, shown: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each expectation is met exactly by the documents that show that write."""
    clock = FakeClock(monkeypatch)

    class Search:
        def search(self, **_: Any) -> dict[str, Any]:
            return _response(source)

    result = wait_until_visible(
        Search(), "catalog", "p1", expected, timeout_s=0.05, poll_s=0.05, sleep=clock.sleep
    )
    assert result.visible is shown
    assert result.searches == 1
    if not shown:
        assert result.reason.startswith("not visible after 0.05 s (1 searches)")


def test_waiting_ends_as_soon_as_search_shows_the_write() -> None:
    """The loop searches again after each poll interval and stops at the first match."""
    answers = [_response(None), _response({"name": "old"}), _response({"name": "new"})]
    sleeps: list[float] = []

    class Search:
        def search(self, **_: Any) -> dict[str, Any]:
            return answers.pop(0)

    result = wait_until_visible(
        Search(), "catalog", "p1", AttributeEquals("name", "new"), poll_s=0.05, sleep=sleeps.append
    )
    assert bool(result)
    assert result.searches == 3
    assert sleeps == [0.05, 0.05]
    assert result.source == {"name": "new"}


class NoSearch:
    """A client whose every search is a test failure: arguments must be refused before."""

    def search(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("a search was sent")


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"timeout_s": float("nan")}, ValueError, "timeout_s must be between"),
        ({"timeout_s": -1}, ValueError, "timeout_s must be positive"),
        ({"timeout_s": 0}, ValueError, "timeout_s must be positive"),
        ({"timeout_s": float("inf")}, ValueError, "timeout_s must be between"),
        ({"timeout_s": 301}, ValueError, "timeout_s must be between"),
        ({"timeout_s": "5"}, TypeError, "timeout_s must be a number"),
        ({"poll_s": -1}, ValueError, "poll_s must be between 0.05"),
        ({"poll_s": 0}, ValueError, "poll_s must be between 0.05"),
        ({"poll_s": float("nan")}, ValueError, "poll_s must be between"),
        ({"poll_s": True}, TypeError, "poll_s must be a number"),
        ({"expected": None}, TypeError, "expected must be AttributeEquals"),
        ({"expected": "name"}, TypeError, "expected must be AttributeEquals"),
        ({"index": ""}, ValueError, "index must not be empty"),
        ({"index": None}, TypeError, "index must be a str"),
        ({"document_id": 42}, TypeError, "document_id must be a str"),
        ({"client": object()}, TypeError, "client must be an opensearch-py client"),
        ({"sleep": 0.2}, TypeError, "sleep must be callable"),
    ],
)
def test_bad_arguments_are_refused_before_any_search(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    """NaN, negative or zero times, a missing expectation: a named error, and no search sent."""
    call: dict[str, Any] = {
        "client": NoSearch(),
        "index": "catalog",
        "document_id": "p1",
        "expected": Deleted(),
        **arguments,
    }
    positional = [call.pop(name) for name in ("client", "index", "document_id", "expected")]
    with pytest.raises(error, match=message):
        wait_until_visible(*positional, **call)


def test_the_async_twin_checks_its_arguments_before_any_search() -> None:
    """wait_until_visible_async refuses NaN (it used to search in a loop with no sleep)."""
    import asyncio

    from syncer.freshness import wait_until_visible_async

    class NoAsyncSearch:
        async def search(self, **_: Any) -> dict[str, Any]:
            raise AssertionError("a search was sent")

    with pytest.raises(ValueError, match="timeout_s"):
        asyncio.run(
            wait_until_visible_async(
                NoAsyncSearch(), "catalog", "p1", Deleted(), timeout_s=float("nan")
            )
        )
    with pytest.raises(TypeError, match="expected must be"):
        asyncio.run(wait_until_visible_async(NoAsyncSearch(), "catalog", "p1", None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("epoch_ms", "message"),
    [
        (1_780_000_003, "looks like seconds"),
        (1_780_000_003_000_000, "looks like microseconds"),
        (-1, "looks like seconds"),
    ],
)
def test_written_at_in_other_units_is_refused(epoch_ms: int, message: str) -> None:
    """Seconds would make every document look new: a wrong yes. Refused when it is built."""
    with pytest.raises(ValueError, match=message):
        WrittenAt(epoch_ms)


@pytest.mark.parametrize("epoch_ms", [1_780_000_003.5, "1780000003000", True, None])
def test_written_at_that_is_no_int_is_a_type_error(epoch_ms: Any) -> None:
    """epoch_ms is an int of milliseconds; the error says how to make one."""
    with pytest.raises(TypeError, match=r"time\.time_ns\(\) // 1_000_000"):
        WrittenAt(epoch_ms)


def test_written_at_never_answers_yes_for_an_older_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A document changed before the write's second is not the write, whatever the wait."""
    clock = FakeClock(monkeypatch)

    class Search:
        def search(self, **_: Any) -> dict[str, Any]:
            return _response({"_syncer": {"changed_at": CHANGED_AT_MS - 1000}})

    result = wait_until_visible(
        Search(), "catalog", "p1", WrittenAt(CHANGED_AT_MS), timeout_s=1, sleep=clock.sleep
    )
    assert not result.visible
    assert result.searches == 5  # at 0, 0.2, 0.4, 0.6, 0.8; the deadline at 1.0 ends it


@pytest.mark.parametrize(
    ("indexed", "expected", "shown"),
    [
        pytest.param(0.1, Decimal("0.1"), True, id="decimal-as-boto3-gives-it"),
        pytest.param(19.99, Decimal("19.990"), True, id="decimal-trailing-zero"),
        pytest.param(7, Decimal("7"), True, id="decimal-integer"),
        pytest.param(12345678901234567890, Decimal("12345678901234567890"), True, id="big-int"),
        pytest.param(0.1, Decimal("0.2"), False, id="decimal-other"),
        pytest.param(1, True, False, id="true-is-not-1"),
        pytest.param(True, 1, False, id="1-is-not-true"),
        pytest.param(["a", "b"], {"b", "a"}, True, id="set-as-sorted-list"),
        pytest.param([1, 2.5], {Decimal("2.5"), Decimal("1")}, True, id="number-set"),
        pytest.param({"w": 0.5}, {"w": Decimal("0.5")}, True, id="nested-decimal"),
        pytest.param({"w": 0.5, "x": 1}, {"w": Decimal("0.5")}, False, id="map-with-more"),
        pytest.param("aGk=", b"hi", True, id="binary-as-base64"),
        pytest.param("7", 7, False, id="text-is-not-number"),
    ],
)
def test_attribute_values_compare_as_json_with_exact_numbers(
    indexed: Any, expected: Any, shown: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decimal("0.1") from boto3 matches the 0.1 search returns; bool and int never mix."""
    clock = FakeClock(monkeypatch)

    class Search:
        def search(self, **_: Any) -> dict[str, Any]:
            return _response({"price": indexed})

    result = wait_until_visible(
        Search(),
        "catalog",
        "p1",
        AttributeEquals("price", expected),
        timeout_s=0.05,
        poll_s=0.05,
        sleep=clock.sleep,
    )
    assert result.visible is shown


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("", 1, ValueError),
        (None, 1, TypeError),
        ("price", float("nan"), ValueError),
        ("price", Decimal("NaN"), ValueError),
        ("price", object(), TypeError),
        ("price", {1: "a"}, TypeError),
    ],
)
def test_an_attribute_expectation_that_can_never_match_is_refused(
    name: Any, value: Any, error: type[Exception]
) -> None:
    """NaN equals nothing and an object is no JSON: refused when built, not a time-out later."""
    with pytest.raises(error, match="AttributeEquals"):
        AttributeEquals(name, value)


def test_each_search_gets_the_time_left_as_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """request_timeout is the deadline minus now: a slow search cannot outlive the wait."""
    clock = FakeClock(monkeypatch)
    timeouts: list[float] = []

    class Search:
        def search(self, **request: Any) -> dict[str, Any]:
            timeouts.append(request["request_timeout"])
            clock.now += 0.1  # each search takes 0.1 s
            return _response(None)

    result = wait_until_visible(
        Search(), "catalog", "p1", Deleted(), timeout_s=0.5, poll_s=0.1, sleep=clock.sleep
    )
    assert result.visible
    assert timeouts == [0.5]


def test_a_search_cut_short_by_the_deadline_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """A time-out of the search that had only the time left answers "not visible", on time."""
    clock = FakeClock(monkeypatch)

    class ConnectionTimeout(Exception):
        """Named as opensearch-py's."""

    class Search:
        def search(self, **request: Any) -> dict[str, Any]:
            clock.now += request["request_timeout"]
            raise ConnectionTimeout("read timed out")

    result = wait_until_visible(
        Search(), "catalog", "p1", Deleted(), timeout_s=0.5, sleep=clock.sleep
    )
    assert not result.visible
    assert result.waited_s == pytest.approx(0.5)
    assert "did not answer in the time left (ConnectionTimeout)" in result.reason


def test_a_search_error_before_the_deadline_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other errors, and time-outs with time still left, are the client's to raise."""
    clock = FakeClock(monkeypatch)

    class Search:
        def search(self, **_: Any) -> dict[str, Any]:
            raise TimeoutError("the server gave up")

    with pytest.raises(TimeoutError, match="gave up"):
        wait_until_visible(Search(), "catalog", "p1", Deleted(), timeout_s=5, sleep=clock.sleep)


def test_a_cut_short_last_search_keeps_what_the_one_before_showed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The time-out's reason says what search last showed, then that the last look ran out."""
    clock = FakeClock(monkeypatch)

    class ConnectionTimeout(Exception):
        """Named as opensearch-py's."""

    class Search:
        def __init__(self) -> None:
            self.calls = 0

        def search(self, **request: Any) -> dict[str, Any]:
            self.calls += 1
            if self.calls == 1:
                return _response({"name": "old"})
            clock.now += request["request_timeout"]
            raise ConnectionTimeout("read timed out")

    result = wait_until_visible(
        Search(), "catalog", "p1", AttributeEquals("name", "new"), timeout_s=0.3, sleep=clock.sleep
    )
    assert not result.visible
    assert result.searches == 2
    assert "name is 'old', not 'new'; the last search did not answer" in result.reason


def test_no_search_is_sent_with_too_little_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pause that ends within 10 ms of the deadline ends the wait: no search could answer."""
    clock = FakeClock(monkeypatch)
    timeouts: list[float] = []

    class Search:
        def search(self, **request: Any) -> dict[str, Any]:
            timeouts.append(request["request_timeout"])
            return _response(None)

    result = wait_until_visible(
        Search(),
        "catalog",
        "p1",
        AttributeEquals("name", "new"),
        timeout_s=0.205,
        poll_s=0.2,
        sleep=clock.sleep,
    )
    assert not result.visible
    assert timeouts == [pytest.approx(0.205)]


def test_a_client_of_the_other_kind_is_refused_before_any_search() -> None:
    """A sync client to the async wait (or the reverse) would block or fail after a search."""
    import asyncio

    from syncer.freshness import wait_until_visible_async

    class AsyncSearch:
        async def search(self, **_: Any) -> dict[str, Any]:
            raise AssertionError("a search was sent")

    class WrappedAsync:
        """Shaped as opensearch-py's AsyncOpenSearch: a plain method returning a coroutine."""

        def search(self, **_: Any) -> Any:
            raise AssertionError("a search was sent")

    WrappedAsync.__module__ = "opensearchpy._async.client"

    class Sync:
        def search(self, **_: Any) -> dict[str, Any]:
            raise AssertionError("a search was sent")

    Sync.__module__ = "opensearchpy.client"

    for client in (AsyncSearch(), WrappedAsync()):
        with pytest.raises(TypeError, match="use wait_until_visible_async"):
            wait_until_visible(client, "catalog", "p1", Deleted())
    with pytest.raises(TypeError, match="use wait_until_visible"):
        asyncio.run(wait_until_visible_async(Sync(), "catalog", "p1", Deleted()))


def test_an_unknown_client_of_the_other_kind_is_refused_at_its_first_answer() -> None:
    """A wrapper that cannot be told apart before the call is refused by what it returns."""
    import asyncio

    from syncer.freshness import wait_until_visible_async

    class ReturnsCoroutine:
        def search(self, **_: Any) -> Any:
            async def answer() -> dict[str, Any]:
                return _response(None)

            return answer()

    class ReturnsDict:
        def search(self, **_: Any) -> dict[str, Any]:
            return _response(None)

    with pytest.raises(TypeError, match="returned an awaitable: use wait_until_visible_async"):
        wait_until_visible(ReturnsCoroutine(), "catalog", "p1", Deleted())
    with pytest.raises(TypeError, match="not an awaitable: use wait_until_visible"):
        asyncio.run(wait_until_visible_async(ReturnsDict(), "catalog", "p1", Deleted()))
