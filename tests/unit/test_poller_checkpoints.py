"""The checkpoint file: keyed by stream ARN then shard id, replaced atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from syncer.sinks.checkpoints import CheckpointError, FileCheckpointStore, ShardCheckpoint

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"
OTHER_ARN = ARN.replace("catalog", "orders")


def test_saved_checkpoints_load_back_in_a_new_store(tmp_path: Path) -> None:
    """What one process saved, the next one loads: per stream, per shard, with the finished flag."""
    path = tmp_path / "checkpoints.json"
    store = FileCheckpointStore(path)
    store.save(ARN, "shard-1", ShardCheckpoint("1100000000017454423009", finished=True))
    store.save(ARN, "shard-2", ShardCheckpoint("1100000000017454423042"))
    store.save(OTHER_ARN, "shard-1", ShardCheckpoint(None))
    reloaded = FileCheckpointStore(path)
    assert reloaded.load(ARN) == {
        "shard-1": ShardCheckpoint("1100000000017454423009", finished=True),
        "shard-2": ShardCheckpoint("1100000000017454423042"),
    }
    assert reloaded.load(OTHER_ARN) == {"shard-1": ShardCheckpoint(None)}
    assert json.loads(path.read_text())[ARN]["shard-2"]["sequence_number"].endswith("042")


def test_a_missing_file_means_no_checkpoints(tmp_path: Path) -> None:
    """Without a file every shard starts fresh (TRIM_HORIZON)."""
    assert FileCheckpointStore(tmp_path / "absent.json").load(ARN) == {}


def test_a_failed_save_leaves_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash before the rename keeps the old file intact and leaves no temp file behind."""
    path = tmp_path / "checkpoints.json"
    store = FileCheckpointStore(path)
    store.save(ARN, "shard-1", ShardCheckpoint("100"))
    before = path.read_bytes()

    def crash(source: str, target: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.save(ARN, "shard-1", ShardCheckpoint("200"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints.json"]
    assert store.load(ARN) == {"shard-1": ShardCheckpoint("100")}


def test_a_corrupt_file_is_refused_with_its_path(tmp_path: Path) -> None:
    """A torn or hand-edited file is an error naming the file, never a silent restart."""
    path = tmp_path / "checkpoints.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoints\.json"):
        FileCheckpointStore(path).load(ARN)


def test_forgetting_drops_only_that_streams_other_shards_and_lasts(tmp_path: Path) -> None:
    """Shards not kept go from the file; other streams and kept shards stay."""
    path = tmp_path / "checkpoints.json"
    store = FileCheckpointStore(path)
    store.save(ARN, "old", ShardCheckpoint("1", finished=True))
    store.save(ARN, "live", ShardCheckpoint("2"))
    store.save(OTHER_ARN, "old", ShardCheckpoint("3"))
    assert store.forget_others(ARN, {"live", "new"}) == ["old"]
    assert store.forget_others(ARN, {"live"}) == []
    reloaded = FileCheckpointStore(path)
    assert reloaded.load(ARN) == {"live": ShardCheckpoint("2")}
    assert reloaded.load(OTHER_ARN) == {"old": ShardCheckpoint("3")}
