"""The shard catalog: DescribeStream's pages, and which cursors survive a new description."""

from __future__ import annotations

from typing import Any

from syncer.runner.cursor import Batching, Phase, ShardCursor
from syncer.runner.shards import describe_shards, readable_shards, reconcile
from syncer.runner.streams import ordered_shards
from syncer.sinks.checkpoints import ShardCheckpoint

BATCHING = Batching()


def _cursor(sequence_number: str | None, finished: bool = False) -> ShardCursor:
    return ShardCursor.from_checkpoint(ShardCheckpoint(sequence_number, finished), BATCHING)


def test_every_page_of_describe_stream_is_read() -> None:
    """Pages are followed by LastEvaluatedShardId until a page has none."""
    pages = {
        None: {"Shards": [{"ShardId": "a"}], "LastEvaluatedShardId": "a"},
        "a": {"Shards": [{"ShardId": "b", "ParentShardId": "a"}]},
    }
    calls: list[dict[str, Any]] = []

    def describe_stream(**request: Any) -> dict[str, Any]:
        calls.append(request)
        return {"StreamDescription": pages[request.get("ExclusiveStartShardId")]}

    shards = describe_shards(describe_stream, "arn:stream")
    assert [shard["ShardId"] for shard in shards] == ["a", "b"]
    assert calls == [
        {"StreamArn": "arn:stream"},
        {"StreamArn": "arn:stream", "ExclusiveStartShardId": "a"},
    ]


def test_new_shards_start_at_their_saved_checkpoint_or_none() -> None:
    """A shard first described gets a cursor from the store's checkpoint, else from nothing."""
    saved = {"old": ShardCheckpoint("40", finished=True)}
    result = reconcile({}, [{"ShardId": "old"}, {"ShardId": "new"}], saved, BATCHING)
    assert result.cursors["old"].phase is Phase.FINISHED
    assert result.cursors["new"] == _cursor(None)
    assert result.left_unfinished == {}


def test_known_cursors_are_kept_as_they_are() -> None:
    """A shard still described keeps its cursor, not the saved checkpoint it started from."""
    moved = _cursor("90")
    result = reconcile({"s": moved}, [{"ShardId": "s"}], {"s": ShardCheckpoint("10")}, BATCHING)
    assert result.cursors == {"s": moved}


def test_an_unfinished_shard_that_left_the_stream_is_a_gap() -> None:
    """A shard trimmed before it was read to its end is reported; a finished one is not."""
    cursors = {"unread": _cursor("5"), "done": _cursor("7", finished=True), "live": _cursor("9")}
    result = reconcile(cursors, [{"ShardId": "live"}], {}, BATCHING)
    assert list(result.cursors) == ["live"]
    assert result.left_unfinished == {"unread": cursors["unread"]}


def test_a_merged_shard_waits_for_its_adjacent_parent_too() -> None:
    """A Kinesis merge's child has two parents: readable only once both are finished (or gone)."""
    shards = [
        {"ShardId": "child", "ParentShardId": "left", "AdjacentParentShardId": "right"},
        {"ShardId": "left"},
        {"ShardId": "right"},
    ]
    assert [s["ShardId"] for s in ordered_shards(shards)] == ["left", "right", "child"]
    assert readable_shards(shards, finished=set()) == ["left", "right"]
    assert readable_shards(shards, finished={"left"}) == ["right"]
    assert readable_shards(shards, finished={"left", "right"}) == ["child"]
    assert readable_shards(shards[:2], finished={"left"}) == ["child"]  # right trimmed
