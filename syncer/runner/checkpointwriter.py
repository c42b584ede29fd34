"""The poller's checkpoint writer: saves with retry, keeps unsaved ones, drops trimmed shards' ones."""

from __future__ import annotations

import logging
from collections.abc import Collection

from syncer.sinks.checkpoints import CheckpointStore, ShardCheckpoint
from syncer.sinks.resilience import Downstream

log = logging.getLogger(__name__)


class CheckpointWriter:
    """Writes shard checkpoints to a store through its ``Downstream`` guard; never loses one.

    A save that fails (after the guard's retries) is kept and tried again on the next
    ``flush``; processing goes on meanwhile, since a late checkpoint only means redelivery.
    """

    def __init__(self, store: CheckpointStore, guard: Downstream) -> None:
        self.store = store
        self.guard = guard
        self.saved = 0  # checkpoints written so far
        self._unsaved: dict[tuple[str, str], ShardCheckpoint] = {}

    @property
    def unsaved(self) -> int:
        """How many checkpoints are still waiting to be written."""
        return len(self._unsaved)

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        """Queue ``checkpoint`` (replacing the shard's unsaved one) and write what is queued."""
        self._unsaved[(stream_arn, shard_id)] = checkpoint
        self.flush()

    def flush(self) -> None:
        """Save every checkpoint not saved yet; a failure keeps it for the next attempt."""
        for (stream_arn, shard_id), checkpoint in list(self._unsaved.items()):
            try:
                self.guard.call_with_retry(self.store.save, stream_arn, shard_id, checkpoint)
            except Exception as error:  # noqa: BLE001 - processing goes on; the save is retried
                log.error(
                    "saving checkpoint %s of shard %s to %s failed: %s",
                    checkpoint.sequence_number,
                    shard_id,
                    self.store.describe(),
                    error,
                )
                return
            if self._unsaved.get((stream_arn, shard_id)) == checkpoint:
                del self._unsaved[(stream_arn, shard_id)]
            self.saved += 1

    def forget_trimmed(
        self, label: str, stream_arn: str, live: Collection[str], known: Collection[str]
    ) -> bool:
        """Drop the saved checkpoints of shards the stream no longer has (trimmed after 24 h);
        whether the store now holds only ``live`` shards' checkpoints. ``label`` names the
        stream in log lines ("table catalog", "Kinesis stream changes").

        Without this the store grows by every shard the stream ever had (a new one every few
        hours per partition). Such a checkpoint can never be used again: a child whose parent
        left the stream starts without waiting for it. ``known`` are the shards whose
        checkpoints the store may hold (loaded at start or saved since): only when one of them
        left the stream is there anything to drop, so an idle worker does no store I/O here.
        """
        if not set(known) - set(live):
            return True
        try:
            gone = self.store.forget_others(stream_arn, live)
        except Exception as error:  # noqa: BLE001 - housekeeping; the checkpoints stay as they were
            log.warning(
                "%s: could not drop checkpoints of trimmed shards from %s: %s",
                label,
                self.store.describe(),
                error,
            )
            return False
        if gone:
            log.info(
                "%s: dropped the checkpoints of %d trimmed shard(s) from %s",
                label,
                len(gone),
                self.store.describe(),
            )
        return True
