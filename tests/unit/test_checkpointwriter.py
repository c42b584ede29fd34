"""The poller's checkpoint writer: a failed save is kept and written later; trimmed shards go."""

from __future__ import annotations

from collections.abc import Collection

from syncer.config import ResilienceConfig
from syncer.runner.checkpointwriter import CheckpointWriter
from syncer.sinks.checkpoints import ShardCheckpoint
from syncer.sinks.resilience import Downstream

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"


class FlakyStore:
    """Saves in memory; refuses while ``down``; counts forget calls."""

    def __init__(self) -> None:
        self.down = False
        self.saved: dict[str, ShardCheckpoint] = {}
        self.forget_calls = 0

    def load(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        return dict(self.saved)

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        if self.down:
            raise RuntimeError("store unavailable")
        self.saved[shard_id] = checkpoint

    def forget_others(self, stream_arn: str, keep: Collection[str]) -> list[str]:
        self.forget_calls += 1
        gone = sorted(set(self.saved) - set(keep))
        self.saved = {k: v for k, v in self.saved.items() if k in keep}
        return gone

    def describe(self) -> str:
        return "memory"


def _writer(store: FlakyStore) -> CheckpointWriter:
    return CheckpointWriter(store, Downstream("checkpoints", ResilienceConfig(max_attempts=1)))


def test_a_failed_save_is_kept_and_the_newest_one_written_later() -> None:
    """While the store refuses, the shard's newest checkpoint waits; the next flush writes it."""
    store = FlakyStore()
    writer = _writer(store)
    store.down = True
    writer.save(ARN, "s", ShardCheckpoint("10"))
    writer.save(ARN, "s", ShardCheckpoint("20"))
    assert (writer.unsaved, writer.saved, store.saved) == (1, 0, {})
    store.down = False
    writer.flush()
    assert (writer.unsaved, writer.saved, store.saved) == (0, 1, {"s": ShardCheckpoint("20")})


def test_trimmed_shards_checkpoints_are_dropped_only_when_one_left() -> None:
    """No store call while every known shard is still live; a shard gone is dropped."""
    store = FlakyStore()
    writer = _writer(store)
    writer.save(ARN, "old", ShardCheckpoint("1", finished=True))
    writer.save(ARN, "live", ShardCheckpoint("2"))
    assert writer.forget_trimmed("catalog", ARN, {"old", "live"}, {"old", "live"})
    assert store.forget_calls == 0
    assert writer.forget_trimmed("catalog", ARN, {"live"}, {"old", "live"})
    assert (store.forget_calls, store.saved) == (1, {"live": ShardCheckpoint("2")})
