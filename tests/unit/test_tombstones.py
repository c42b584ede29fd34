"""Ages and the tombstone query of `syncer purge-tombstones`."""

from __future__ import annotations

import pytest

from syncer.commands.purge import DAY_S, parse_age, tombstone_query


@pytest.mark.parametrize(
    ("text", "seconds"), [("36h", 36 * 3600), ("15d", 15 * DAY_S), ("90", 90), ("30m", 1800)]
)
def test_ages_parse_with_units(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["-1d", "soon", "d", ""])
def test_bad_ages_are_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match=r"not an age.*15d"):
        parse_age(text)


def test_query_matches_only_tombstones_with_an_older_change_time() -> None:
    """Live documents, and tombstones without a change time, never match."""
    filters = tombstone_query(1_000)["bool"]["filter"]
    assert {"term": {"_syncer.deleted": True}} in filters
    assert {"range": {"_syncer.changed_at": {"lt": 1_000}}} in filters
