"""Read-your-writes: what counts as search showing a write, and the waiting loop's result."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.freshness import AttributeEquals, Deleted, WrittenAt, wait_until_visible


def _response(source: dict[str, Any] | None) -> dict[str, Any]:
    hits = [] if source is None else [{"_id": "p1", "_source": source}]
    return {"hits": {"hits": hits}}


CHANGED_AT_MS = 1_780_000_003_000  # ApproximateCreationDateTime: whole seconds


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
def test_what_shows_a_write(source: dict[str, Any] | None, expected: Any, shown: bool) -> None:
    """Each expectation is met exactly by the documents that show that write."""
    calls: list[float] = []

    class Search:
        def search(self, **_: Any) -> dict[str, Any]:
            return _response(source)

    result = wait_until_visible(
        Search(), "catalog", "p1", expected, timeout_s=0.0, sleep=calls.append
    )
    assert result.visible is shown
    assert result.searches == 1
    if not shown:
        assert result.reason.startswith("not visible after 0 s (1 searches)")


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
