"""The shard catalog of a stream: DescribeStream's or ListShards' pages, lineage (parents first),
shards come and gone."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.runner.cursor import Batching, ShardCursor
from syncer.runner.streams import ordered_shards, parent_ids
from syncer.sinks.checkpoints import ShardCheckpoint

Shard = Mapping[str, Any]  # one entry of DescribeStream's Shards


def describe_shards(describe_stream: Callable[..., Any], stream_arn: str) -> list[Shard]:
    """Every shard of the stream, following DescribeStream's pages (``describe_stream`` does I/O)."""
    described: list[Shard] = []
    start: dict[str, str] = {}
    while True:
        page = describe_stream(StreamArn=stream_arn, **start)
        description = page["StreamDescription"]
        described.extend(description.get("Shards", []))
        last = description.get("LastEvaluatedShardId")
        if not last:
            return described
        start = {"ExclusiveStartShardId": last}


def readable_shards(shards: Sequence[Shard], finished: Collection[str]) -> list[str]:
    """Ids of the shards that may be read now, parents first.

    A child waits until each of its parents (two after a Kinesis merge) is finished, or is no
    longer in the stream (trimmed): the source orders an item's changes across that boundary.
    """
    described = {shard["ShardId"] for shard in shards}
    ready: list[str] = []
    for shard in ordered_shards(list(shards)):
        shard_id = shard["ShardId"]
        if shard_id in finished:
            continue
        if all(parent not in described or parent in finished for parent in parent_ids(shard)):
            ready.append(shard_id)
    return ready


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The cursors after a DescribeStream, and the shards that left the stream unfinished."""

    cursors: dict[str, ShardCursor]
    left_unfinished: dict[str, ShardCursor]  # trimmed before syncer read them to their end: gaps


def reconcile(
    cursors: Mapping[str, ShardCursor],
    described: Sequence[Shard],
    saved: Mapping[str, ShardCheckpoint],
    batching: Batching,
) -> Reconciled:
    """Keep the cursors of described shards, drop the others, start new ones at their saved
    checkpoint (or none)."""
    ids = {shard["ShardId"] for shard in described}
    kept = {shard_id: cursor for shard_id, cursor in cursors.items() if shard_id in ids}
    left = {
        shard_id: cursor
        for shard_id, cursor in cursors.items()
        if shard_id not in ids and not cursor.checkpoint.finished
    }
    for shard in described:
        shard_id = shard["ShardId"]
        if shard_id not in kept:
            checkpoint = saved.get(shard_id, ShardCheckpoint(None))
            kept[shard_id] = ShardCursor.from_checkpoint(checkpoint, batching)
    return Reconciled(kept, left)


def readable_ids(cursors: Mapping[str, ShardCursor], described: Sequence[Shard]) -> list[str]:
    """The ids of the shards to read now, parents first (a finished shard is not read again)."""
    finished = {shard_id for shard_id, c in cursors.items() if c.checkpoint.finished}
    return readable_shards(described, finished)
