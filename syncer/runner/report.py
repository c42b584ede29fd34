"""What ``syncer run`` reports: the run's summary, logged at exit, and the poller's log lines
(retries, gaps, batches)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.core.outcome import BatchOutcome
from syncer.runner.cursor import RetryFrom, sequence_numbers
from syncer.runner.window import ReplayWindow
from syncer.sinks.checkpoints import ShardCheckpoint

log = logging.getLogger("syncer.runner.poller")  # the name logs and log assertions know


@dataclass(slots=True)
class RunSummary:
    """What a run did; logged at exit."""

    batches: int = 0
    records: int = 0  # records handed to process_batch, redeliveries included
    failures_retried: int = 0  # batches that failed in part or whole and were read again
    gaps: int = 0  # times records were lost to the stream's retention before syncer read them
    expired_iterators: int = 0
    checkpoints_saved: int = 0
    caught_up: bool = False  # --once ended because no shard had more records

    def log_done(self) -> None:
        log.info(
            "syncer run done: %d batches, %d records, %d failures retried, %d gaps, "
            "%d expired iterators, %d checkpoints saved",
            self.batches,
            self.records,
            self.failures_retried,
            self.gaps,
            self.expired_iterators,
            self.checkpoints_saved,
        )


def _log_retry(name: str, action: RetryFrom, checkpoint: ShardCheckpoint, delay: float) -> None:
    log.warning(
        "%s: %s; checkpoint stays at %s; retrying from %s in %.2f s (failure %d in a row)",
        name,
        action.reason,
        checkpoint.sequence_number or "the start (none yet)",
        action.sequence_number,
        delay,
        action.failures,
    )


def _log_trimmed(label: str, shard_id: str, requested: object, gaps: int) -> None:
    log.warning(
        "GAP: %s shard %s: checkpoint %s is older than the stream's retention "
        "(TrimmedDataAccessException); records after it were trimmed before syncer read "
        "them; continuing from the oldest available record (TRIM_HORIZON); gaps so far: %d",
        label,
        shard_id,
        requested,
        gaps,
    )


def _log_left(label: str, shard_id: str, checkpoint: ShardCheckpoint, gaps: int) -> None:
    log.warning(
        "GAP: %s shard %s left the stream (trimmed) before syncer read it "
        "to its end; checkpoint %s; gaps so far: %d",
        label,
        shard_id,
        checkpoint.sequence_number,
        gaps,
    )


def _log_replay(label: str, window: ReplayWindow, retention_hours: int | None, store: str) -> None:
    log.info(
        "%s: replaying %s; its own checkpoints in %s (a stopped replay resumes when run "
        "again with the same times)",
        label,
        window.describe(),
        store,
    )
    if retention_hours is not None:
        oldest_s = time.time() - retention_hours * 3600
        if window.start.timestamp() < oldest_s:
            log.warning(
                "%s keeps records %d hours: changes before %s are gone from it and are not "
                "replayed",
                label,
                retention_hours,
                dt.datetime.fromtimestamp(oldest_s, dt.UTC).isoformat(timespec="seconds"),
            )


def _log_batch(
    name: str,
    records: Sequence[Mapping[str, Any]],
    outcome: BatchOutcome,
    checkpoint: ShardCheckpoint,
) -> None:
    numbers = sequence_numbers(records)
    log.info(
        "%s: %d records %s..%s: %d indexed, %d deleted, %d stale skipped, "
        "%d dead-lettered, %d failed; checkpoint %s",
        name,
        len(numbers),
        numbers[0],
        numbers[-1],
        outcome.indexed,
        outcome.deleted,
        outcome.skipped_stale,
        outcome.dead_lettered,
        len(outcome.failed_sequence_numbers),
        checkpoint.sequence_number or "unchanged (none)",
    )
