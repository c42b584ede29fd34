"""Reindex arguments, without servers (issue 19 item 3, issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.commands.reindex import MAX_SEGMENTS, ReindexOptions
from syncer.errors import ConfigError


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"segments": 0}, "segments"),
        ({"segments": -1}, "segments"),
        ({"segments": MAX_SEGMENTS + 1}, "segments"),
        ({"page_size": 0}, "page size"),
        ({"delete_grace_s": -1.0}, "grace"),
        ({"delete_grace_s": float("nan")}, "grace"),
    ],
)
def test_bad_options_are_refused_when_built(options: dict[str, float], named: str) -> None:
    """Options that DynamoDB or the swap would refuse later are refused at once, by name."""
    with pytest.raises(ConfigError, match=named):
        ReindexOptions(**options)


def test_options_are_keyword_only() -> None:
    """reindex_table's options read as names at every call site, never as ten positions."""
    with pytest.raises(TypeError):
        ReindexOptions(4)
    assert ReindexOptions(segments=MAX_SEGMENTS, page_size=1).segments == MAX_SEGMENTS


def test_a_state_path_is_deprecated_and_ignored(tmp_path: Path) -> None:
    """The progress lives in the job record: a state path warns, names why, and writes nothing."""
    with pytest.warns(DeprecationWarning, match="job record"):
        ReindexOptions(state_path=tmp_path / "state.json")
    assert not (tmp_path / "state.json").exists()
