"""``syncer run``: the thin loop that polls DynamoDB Streams or Kinesis outside Lambda into
``process_batch``.

Per shard, the loop does what Lambda's event source mapping does:

    DescribeStream / ListShards -> parents before children -> GetShardIterator -> GetRecords
        -> batch -> process_batch -> checkpoint (only what succeeded) -> retry from the lowest
        failure

A table's DynamoDB stream is read by ``syncer.runner.reader.StreamReader``, a Kinesis stream by
``syncer.runner.kinesisreader.KinesisReader`` (``syncer.runner.sources`` says which); the cursor,
the loop and the checkpoints are the same for both. A replay (``--from``/``--until``, Kinesis
only) starts its shards at a time, ends each at the window's end, and keeps checkpoints of its
own (``syncer.runner.window``).

What to do next for a shard is decided by ``syncer.runner.cursor.step`` (pure, named states); the
stream's shards and their lineage by ``syncer.runner.shards``; checkpoint saving by
``syncer.runner.checkpointwriter``. This module does the I/O those ask for and feeds back what came of
it. A shard's checkpoint moves only past records that ``process_batch`` did not report, so a
crash or a restart redelivers records (at-least-once, like Lambda) but never skips one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from syncer.config import Config
from syncer.core.outcome import BatchOutcome
from syncer.errors import ConfigError
from syncer.pipeline import cyclic_gc_paused, process_batch
from syncer.runner.checkpointwriter import CheckpointWriter
from syncer.runner.cursor import (
    KINESIS_GET_RECORDS_LIMIT,
    KINESIS_MIN_READ_INTERVAL_S,
    Action,
    BackOff,
    BatchHandled,
    Batching,
    BatchRaised,
    DataTrimmed,
    DescribeSoon,
    Event,
    Finished,
    GetIterator,
    IteratorExpired,
    Pause,
    Phase,
    ProcessBatch,
    ReadRecords,
    RetryFrom,
    SaveCheckpoint,
    ShardCursor,
    StartAt,
    Visit,
    step,
)
from syncer.runner.kinesisreader import KinesisReader
from syncer.runner.reader import ShardReader, StreamReader
from syncer.runner.report import (
    RunSummary,
    _log_batch,
    _log_left,
    _log_replay,
    _log_retry,
    _log_trimmed,
)
from syncer.runner.shards import Shard, readable_ids, reconcile
from syncer.runner.sources import choose_sources
from syncer.runner.window import ReplayWindow
from syncer.sinks.checkpoints import CheckpointError, CheckpointStore, ShardCheckpoint
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Downstream

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BATCHING_WINDOW_S",
    "MAX_BATCH_SIZE",
    "PollOptions",
    "RunSummary",
    "StreamPoller",
]

MAX_BATCH_SIZE = 10_000  # Lambda's maximum for DynamoDB Streams and Kinesis
MAX_BATCHING_WINDOW_S = 300.0
_SLEEP_SLICE_S = 0.1  # how quickly a stop request is noticed while idle


@dataclass(frozen=True, slots=True)
class PollOptions:
    """How ``syncer run`` batches and paces its reads (Lambda's event source mapping knobs)."""

    batch_size: int = 100
    batching_window_s: float = 0.0  # 0: send what one GetRecords returned
    idle_sleep_s: float = 1.0  # pause of a shard after a GetRecords with no records
    describe_interval_s: float = 30.0  # how often DescribeStream looks for new shards
    once: bool = False  # stop when every shard is caught up
    max_passes: int | None = None  # stop after this many loop passes (tests, bounded runs)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"batch size must be 1 to {MAX_BATCH_SIZE}, got {self.batch_size}")
        if not 0 <= self.batching_window_s <= MAX_BATCHING_WINDOW_S:
            raise ConfigError(
                f"batching window must be 0 to {MAX_BATCHING_WINDOW_S:g} s, "
                f"got {self.batching_window_s}"
            )
        if self.idle_sleep_s < 0 or self.describe_interval_s < 0:
            raise ConfigError("idle sleep and describe interval must not be negative")
        if self.max_passes is not None and self.max_passes < 1:
            raise ConfigError(f"max passes must be at least 1, got {self.max_passes}")

    @property
    def batching(self) -> Batching:
        """The knobs each shard's cursor follows."""
        return Batching(self.batch_size, self.batching_window_s, self.idle_sleep_s, self.once)


@dataclass(slots=True)
class _Stream:
    label: str  # "table catalog" (its DynamoDB stream) or "Kinesis stream changes"
    arn: str
    key: str  # where its checkpoints are kept: the ARN, or a replay's own key
    reader: ShardReader
    batching: Batching
    saved: dict[str, ShardCheckpoint]  # loaded at start, less the shards since trimmed
    cursors: dict[str, ShardCursor] = field(default_factory=dict)
    wake_at: dict[str, float] = field(default_factory=dict)  # no visit before (monotonic s)
    described: list[Shard] = field(default_factory=list)
    next_describe: float = 0.0

    def name(self, shard_id: str) -> str:
        return f"{self.label} shard {shard_id}"


class StreamPoller:
    """Reads the tables' streams (DynamoDB Streams or Kinesis) and feeds ``process_batch``; one
    thread.

    ``tables`` (default: every configured one, unless ``kinesis_streams`` are given) are read
    through their ``kinesis_stream`` when the configuration names one, else through their
    DynamoDB stream; ``kinesis_streams`` (names or ARNs) are read too. ``replay`` replays a
    window of Kinesis streams instead of following them (``syncer.runner.window``).
    """

    def __init__(
        self,
        config: Config,
        sinks: Sinks,
        streams: Any,
        dynamodb: Any,
        store: CheckpointStore,
        options: PollOptions | None = None,
        tables: Sequence[str] = (),
        on_batch: Callable[[BatchOutcome], None] | None = None,
        *,
        kinesis: Any = None,
        kinesis_streams: Sequence[str] = (),
        replay: ReplayWindow | None = None,
    ) -> None:
        sources = choose_sources(config, tables, kinesis_streams, replay is not None)
        if sources.kinesis_streams and kinesis is None:
            raise ConfigError("a Kinesis stream is to be read but no Kinesis client was given")
        self.config = config
        self.sinks = sinks
        self.reader = StreamReader(streams, dynamodb, config.resilience)
        self.kinesis_reader = (
            KinesisReader(kinesis, config.resilience, replay) if kinesis is not None else None
        )
        self.store = store
        self.options = options or PollOptions()
        self.tables = list(sources.tables)
        self.kinesis_streams = list(sources.kinesis_streams)
        self.replay = replay
        self.summary = RunSummary()
        self._checkpoints = CheckpointWriter(store, Downstream("checkpoints", config.resilience))
        self._stopping = False
        self.on_batch = on_batch  # metrics observer
        self.last_pass_at = time.monotonic()  # for the health endpoint

    def stop(self) -> None:
        """Ask the loop to stop after the current batch; safe to call from a signal handler."""
        self._stopping = True

    def run(self) -> RunSummary:
        """Poll until stopped (or caught up with ``once``); checkpoints are saved on the way out."""
        streams = [self._open_stream(name) for name in self.tables]
        streams += self._open_kinesis_streams()
        options = self.options
        log.info(
            "syncer run: %s, checkpoints in %s, batch size %d, batching window %g s%s",
            ", ".join(stream.label for stream in streams),
            self.store.describe(),
            options.batch_size,
            options.batching_window_s,
            ", until caught up" if options.once else "",
        )
        passes = 0
        replay_done = False
        try:
            while not self._stopping:
                if options.max_passes is not None and passes >= options.max_passes:
                    log.info("stopping after %d passes (max_passes)", passes)
                    break
                passes += 1
                self._pass(streams)
                if self._stopping:
                    break
                if self.replay is not None and self._replay_done(streams):
                    self.summary.caught_up = replay_done = True
                    break
                if options.once and self._all_caught_up(streams):
                    for stream in streams:  # a finished parent may have children by now
                        self._describe(stream)
                    if self._all_caught_up(streams):
                        self.summary.caught_up = True
                        break
                    continue
                self._sleep(self._next_wake(streams) - time.monotonic())
            if self._stopping:
                log.info("stop requested: the current batch is done, saving checkpoints")
        finally:
            self._flush_checkpoints()
            self.summary.log_done()
        if self._checkpoints.unsaved:
            raise CheckpointError(
                f"{self._checkpoints.unsaved} checkpoint(s) could not be saved to "
                f"{self.store.describe()}; the next run redelivers those records"
            )
        if replay_done:  # not when --once stopped it caught up before its end: it resumes
            self._forget_replay(streams)
        return self.summary

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the loop keeps passing and no downstream breaker is open."""
        stalled_s = time.monotonic() - self.last_pass_at
        limit_s = max(60.0, 3 * self.options.idle_sleep_s + self.config.resilience.max_retry_time_s)
        guards = self.sinks.guards[:3]  # OpenSearch, Redis, DynamoDB
        open_breakers = [g.name for g in guards if g.breaker_state == "open"]
        healthy = stalled_s < limit_s and not open_breakers and not self._stopping
        detail = {
            "seconds_since_last_pass": round(stalled_s, 1),
            "open_breakers": open_breakers,
            "batches": self.summary.batches,
            "gaps": self.summary.gaps,
        }
        return healthy, detail

    # -- the loop ---------------------------------------------------------------------------

    def _pass(self, streams: Sequence[_Stream]) -> None:
        self.last_pass_at = time.monotonic()
        self._flush_checkpoints()
        now = time.monotonic()
        for stream in streams:
            if now >= stream.next_describe:
                self._describe(stream)
        for stream in streams:
            for shard_id in readable_ids(stream.cursors, stream.described):
                if self._stopping:
                    return
                if time.monotonic() >= stream.wake_at.get(shard_id, 0.0):
                    self._apply(
                        stream, shard_id, self._step(stream, shard_id, Visit(time.monotonic()))
                    )

    def _step(self, stream: _Stream, shard_id: str, event: Event) -> tuple[Action, ...]:
        stream.cursors[shard_id], actions = step(stream.cursors[shard_id], event)
        return actions

    def _apply(self, stream: _Stream, shard_id: str, actions: Sequence[Action]) -> None:
        """Carry out ``actions`` in order; what an I/O action leads to is carried out before
        the next one."""
        for action in actions:
            self._apply(stream, shard_id, self._perform(stream, shard_id, action))

    def _perform(self, stream: _Stream, shard_id: str, action: Action) -> tuple[Action, ...]:
        """One action; the actions that its result leads to."""
        name = stream.name(shard_id)
        if isinstance(action, GetIterator | ReadRecords):
            return self._step(stream, shard_id, stream.reader.read(stream.arn, shard_id, action))
        if isinstance(action, ProcessBatch):
            # As in the Lambda handler, the collector stays off until the batch's values are
            # freed (when ``_process`` returns): turned on while the outcome still held them,
            # it would first walk them all (bench/RESULTS.md, section 2).
            with cyclic_gc_paused():
                return self._process(stream, shard_id, action.records)
        if isinstance(action, SaveCheckpoint):
            self._checkpoints.save(stream.key, shard_id, action.checkpoint)
            self.summary.checkpoints_saved = self._checkpoints.saved
        elif isinstance(action, Pause):
            stream.wake_at[shard_id] = action.until
        elif isinstance(action, RetryFrom):
            self.summary.failures_retried += 1
            delay = self._pause_for_backoff(stream, shard_id, action.failures)
            _log_retry(name, action, stream.cursors[shard_id].checkpoint, delay)
        elif isinstance(action, BackOff):
            delay = self._pause_for_backoff(stream, shard_id, action.failures)
            log.error("%s: %s; trying again in %.2f s", name, action.reason, delay)
        elif isinstance(action, IteratorExpired):
            self.summary.expired_iterators += 1
            checkpoint = stream.cursors[shard_id].checkpoint.sequence_number
            log.warning(
                "%s: shard iterator expired; getting a new one after checkpoint %s",
                name,
                checkpoint or "(none: TRIM_HORIZON)",
            )
        elif isinstance(action, DataTrimmed):
            self.summary.gaps += 1
            _log_trimmed(stream.label, shard_id, action.requested, self.summary.gaps)
        elif isinstance(action, Finished):
            log.info("%s: finished (closed and fully handled)", name)
        elif isinstance(action, DescribeSoon):
            stream.next_describe = 0.0
        else:
            assert_never(action)
        return ()

    def _process(
        self, stream: _Stream, shard_id: str, records: Sequence[Mapping[str, Any]]
    ) -> tuple[Action, ...]:
        self.summary.batches += 1
        self.summary.records += len(records)
        try:
            outcome = process_batch(list(records), self.config, self.sinks)
        except ConfigError:
            raise  # found on first use (a database on a Redis Cluster): stop, saying why
        except Exception as error:  # the batch is retried, never skipped
            log.exception("%s: batch of %d records raised", stream.name(shard_id), len(records))
            return self._step(stream, shard_id, BatchRaised(type(error).__name__))
        if self.on_batch is not None:
            self.on_batch(outcome)
        actions = self._step(stream, shard_id, BatchHandled(outcome.failed_sequence_numbers))
        _log_batch(stream.name(shard_id), records, outcome, stream.cursors[shard_id].checkpoint)
        return actions

    def _pause_for_backoff(self, stream: _Stream, shard_id: str, failures: int) -> float:
        """Keep the shard unvisited for the backoff after ``failures`` failures; the delay."""
        delay = stream.reader.backoff_s(failures)
        stream.wake_at[shard_id] = time.monotonic() + delay
        return delay

    def _flush_checkpoints(self) -> None:
        self._checkpoints.flush()
        self.summary.checkpoints_saved = self._checkpoints.saved

    # -- streams and shards ------------------------------------------------------------------

    def _open_stream(self, table: str) -> _Stream:
        stream_arn = self.reader.stream_arn(table)
        batching = self.options.batching
        saved = self.store.load(stream_arn)
        return _Stream(f"table {table}", stream_arn, stream_arn, self.reader, batching, saved)

    def _open_kinesis_streams(self) -> list[_Stream]:
        """Each Kinesis stream once (a name and an ARN may name the same one)."""
        opened: dict[str, _Stream] = {}
        reader = self.kinesis_reader
        if reader is None:
            return []
        batching = replace(
            self.options.batching,
            read_limit=KINESIS_GET_RECORDS_LIMIT,
            min_read_interval_s=KINESIS_MIN_READ_INTERVAL_S,
            read_ahead=True,  # 5 reads a second: each reads up to 10,000, sent batch by batch
        )
        if self.replay is not None:
            start = StartAt("AT_TIMESTAMP", timestamp_s=self.replay.start_s)
            batching = replace(batching, starting_position=start)
        for name_or_arn in self.kinesis_streams:
            stream = reader.open(name_or_arn)
            if stream.arn in opened:
                continue
            key = stream.arn if self.replay is None else self.replay.checkpoint_key(stream.arn)
            label = f"Kinesis stream {stream.name}"
            opened[stream.arn] = _Stream(
                label, stream.arn, key, reader, batching, self.store.load(key)
            )
            if self.replay is not None:
                _log_replay(label, self.replay, stream.retention_hours, self.store.describe())
        return list(opened.values())

    def _replay_done(self, streams: Sequence[_Stream]) -> bool:
        """Every shard of every stream has reached the window's end (looked at again first, so
        that a finished parent's children are not missed)."""
        if not all(self._finished(stream) for stream in streams):
            return False
        for stream in streams:
            self._describe(stream)
        return all(self._finished(stream) for stream in streams)

    @staticmethod
    def _finished(stream: _Stream) -> bool:
        return bool(stream.described) and all(
            stream.cursors[shard["ShardId"]].phase is Phase.FINISHED for shard in stream.described
        )

    def _forget_replay(self, streams: Sequence[_Stream]) -> None:
        """A replay that reached its end drops its checkpoints: the same window run again
        replays again (a replay stopped before its end resumes from them)."""
        for stream in streams:
            try:
                self.store.forget_others(stream.key, ())
            except Exception as error:  # noqa: BLE001 - the replay is done; say what is left
                log.warning(
                    "%s: the replay is done but its checkpoints (%s) could not be dropped "
                    "from %s: %s; the same window run again will find it done",
                    stream.label,
                    stream.key,
                    self.store.describe(),
                    error,
                )
        log.info("replay done: %d records of the window handled", self.summary.records)

    def _describe(self, stream: _Stream) -> None:
        """DescribeStream or ListShards, every page; add new shards, drop those the stream no
        longer has."""
        try:
            described = stream.reader.describe(stream.arn)
        except Exception as error:  # noqa: BLE001 - keep reading the shards already known
            stream.next_describe = time.monotonic() + max(self.options.idle_sleep_s, 1.0)
            log.error("%s: listing its shards failed: %s", stream.label, error)
            return
        ids = {shard["ShardId"] for shard in described}
        known = set(stream.saved) | set(stream.cursors)
        # Never prune on an empty answer.
        if ids and self._checkpoints.forget_trimmed(stream.label, stream.key, ids, known):
            stream.saved = {k: v for k, v in stream.saved.items() if k in ids}
        reconciled = reconcile(stream.cursors, described, stream.saved, stream.batching)
        for shard_id, cursor in reconciled.left_unfinished.items():
            self.summary.gaps += 1
            _log_left(stream.label, shard_id, cursor.checkpoint, self.summary.gaps)
        stream.cursors = reconciled.cursors
        stream.wake_at = {k: v for k, v in stream.wake_at.items() if k in ids}
        stream.described = described
        stream.next_describe = time.monotonic() + self.options.describe_interval_s

    def _all_caught_up(self, streams: Sequence[_Stream]) -> bool:
        return all(
            stream.cursors[shard_id].phase is Phase.CAUGHT_UP
            for stream in streams
            for shard_id in readable_ids(stream.cursors, stream.described)
        )

    def _next_wake(self, streams: Sequence[_Stream]) -> float:
        wakes = [stream.next_describe for stream in streams]
        wakes += [
            stream.wake_at.get(shard_id, 0.0)
            for stream in streams
            for shard_id in readable_ids(stream.cursors, stream.described)
        ]
        return min([time.monotonic() + self.options.idle_sleep_s, *wakes])

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _SLEEP_SLICE_S))
