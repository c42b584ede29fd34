"""Reindex arguments and saved state, without servers (issue 19 item 3, issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncer.commands.reindex import (
    MAX_SEGMENTS,
    IndexRebuild,
    ReindexOptions,
    ReindexState,
    load_state,
    save_state,
)
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


def test_a_state_file_of_the_earlier_layout_reads_as_one_rebuild(tmp_path: Path) -> None:
    """A reindex saved by the release before one state file per table resumes after an upgrade."""
    # given the state an earlier release saved for a plain table
    path = tmp_path / "state.json"
    saved = {
        "table": "catalog",
        "new_index": "catalog-000002",
        "old_index": "catalog-000001",
        "segments": 4,
        "last_keys": {"1": {"pk": {"S": "a"}}},
        "done_segments": [0],
        "indexed": 7,
        "rejected": 0,
        "started_at": 1.5,
        "tombstones_carried": 3,
    }
    path.write_text(json.dumps(saved))
    # when it is loaded, saved again and loaded again
    state = load_state(path)
    assert state is not None
    save_state(state, path)
    # then it is one rebuild of the alias the index is named after, with its progress
    assert load_state(path) == ReindexState(
        "catalog",
        4,
        [IndexRebuild("catalog", "catalog-000002", "catalog-000001", tombstones_carried=3)],
        last_keys={"1": {"pk": {"S": "a"}}},
        done_segments=[0],
        indexed=7,
        started_at=1.5,
    )
