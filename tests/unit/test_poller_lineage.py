"""Shard lineage: a child shard is read only after its parent is finished or gone."""

from __future__ import annotations

from syncer.runner.shards import readable_shards


def _shard(shard_id: str, parent: str | None = None) -> dict[str, str]:
    shard = {"ShardId": shard_id}
    if parent is not None:
        shard["ParentShardId"] = parent
    return shard


def test_a_child_waits_while_its_parent_is_unfinished() -> None:
    """Only the parent is readable while it is not finished, even when listed after the child."""
    shards = [_shard("child", "parent"), _shard("parent")]
    assert readable_shards(shards, finished=set()) == ["parent"]


def test_a_child_starts_once_its_parent_is_finished() -> None:
    """A finished parent is not read again and its child becomes readable."""
    shards = [_shard("parent"), _shard("child", "parent")]
    assert readable_shards(shards, finished={"parent"}) == ["child"]


def test_a_child_whose_parent_left_the_stream_is_readable() -> None:
    """A parent trimmed out of DescribeStream no longer holds its child back."""
    assert readable_shards([_shard("child", "trimmed-parent")], finished=set()) == ["child"]


def test_independent_lineages_are_read_side_by_side() -> None:
    """Two lineages: each one's oldest unfinished shard is readable, and only that one."""
    shards = [
        _shard("b2", "b1"),
        _shard("a3", "a2"),
        _shard("a1"),
        _shard("b1"),
        _shard("a2", "a1"),
    ]
    assert readable_shards(shards, finished={"a1"}) == ["b1", "a2"]


def test_both_children_of_a_split_start_after_the_parent() -> None:
    """A split parent releases both children at once, in the order DescribeStream listed them."""
    shards = [_shard("p"), _shard("c1", "p"), _shard("c2", "p")]
    assert readable_shards(shards, finished={"p"}) == ["c1", "c2"]
