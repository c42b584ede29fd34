"""``syncer run``: poll DynamoDB Streams outside Lambda and feed ``process_batch``, with checkpoints.

Per shard, the loop does what Lambda's event source mapping does:

    DescribeStream -> parents before children -> GetShardIterator -> GetRecords -> batch
        -> process_batch -> checkpoint (only what succeeded) -> retry from the lowest failure

A shard's checkpoint moves only past records that ``process_batch`` did not report, so a crash or
a restart redelivers records (at-least-once, like Lambda) but never skips one.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from syncer.checkpoints import (
    CheckpointError,
    CheckpointStore,
    ShardCheckpoint,
    open_checkpoint_store,
)
from syncer.config import Config, ResilienceConfig
from syncer.errors import ConfigError, DownstreamUnavailableError
from syncer.pipeline import BatchOutcome, Sinks, process_batch
from syncer.resilience import Downstream
from syncer.runtime import aws_client, build_sinks
from syncer.streams import ordered_shards, table_stream_arn, to_lambda_record

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 10_000  # Lambda's maximum for DynamoDB Streams
MAX_BATCHING_WINDOW_S = 300.0
GET_RECORDS_LIMIT = 1000  # GetRecords returns at most 1,000 records per call
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


@dataclass(frozen=True, slots=True)
class BatchAdvance:
    """Where a shard goes after a batch: the new checkpoint and where to read again, if anywhere."""

    checkpoint: str | None  # None: leave the checkpoint where it is
    retry_from: str | None  # None: go on; else read again AT_SEQUENCE_NUMBER this one


def advance_after_batch(sequence_numbers: Sequence[str], failed: Collection[str]) -> BatchAdvance:
    """Checkpoint up to the record before the lowest failed one and retry from that one.

    ``sequence_numbers`` are the batch's records in shard order. Like Lambda's partial batch
    response, the lowest reported number (compared as integers) decides; a reported number that
    is not in the batch cannot be placed, so the whole batch is retried.
    """
    if not sequence_numbers:
        return BatchAdvance(None, None)
    if not failed:
        return BatchAdvance(sequence_numbers[-1], None)
    position = {int(number): index for index, number in enumerate(sequence_numbers)}
    try:
        reported = {int(number) for number in failed}
    except ValueError:
        return BatchAdvance(None, sequence_numbers[0])
    if not reported <= position.keys():
        return BatchAdvance(None, sequence_numbers[0])
    first_failed = position[min(reported)]
    checkpoint = sequence_numbers[first_failed - 1] if first_failed > 0 else None
    return BatchAdvance(checkpoint, sequence_numbers[first_failed])


def readable_shards(shards: Sequence[Mapping[str, Any]], finished: Collection[str]) -> list[str]:
    """Ids of the shards that may be read now, parents first.

    A child waits until its parent is finished, or until the parent is no longer in the stream
    (trimmed after 24 hours): DynamoDB Streams orders an item's changes across that boundary.
    """
    described = {shard["ShardId"] for shard in shards}
    ready: list[str] = []
    for shard in ordered_shards(list(shards)):
        shard_id = shard["ShardId"]
        parent = shard.get("ParentShardId")
        if shard_id in finished:
            continue
        if parent is None or parent not in described or parent in finished:
            ready.append(shard_id)
    return ready


def backoff_delay_s(failures: int, settings: ResilienceConfig, rng: random.Random) -> float:
    """Exponential backoff with jitter, capped, as tenacity's ``wait_exponential_jitter``."""
    exponential: float = settings.initial_backoff_s * 2 ** max(0, failures - 1)
    return min(settings.max_backoff_s, exponential + rng.uniform(0, settings.initial_backoff_s))


@dataclass(slots=True)
class _Stream:
    table: str
    arn: str
    saved: dict[str, ShardCheckpoint]
    shards: dict[str, _Shard] = field(default_factory=dict)
    described: list[Mapping[str, Any]] = field(default_factory=list)
    next_describe: float = 0.0


@dataclass(slots=True)
class _Shard:
    stream: _Stream = field(repr=False)
    shard_id: str
    checkpoint: ShardCheckpoint
    iterator: str | None = None
    exhausted: bool = False  # GetRecords returned no NextShardIterator: the shard is closed
    position: tuple[str, str | None] | None = None  # next iterator's start; None: the checkpoint
    batch: list[dict[str, Any]] = field(default_factory=list)
    batch_since: float = 0.0
    failures: int = 0
    not_before: float = 0.0
    caught_up: bool = False  # the last GetRecords returned nothing and nothing is buffered

    @property
    def name(self) -> str:
        return f"table {self.stream.table} shard {self.shard_id}"


class StreamPoller:
    """Reads the streams of the configured tables and feeds ``process_batch``; one thread."""

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
    ) -> None:
        configured = [table.name for table in config.tables]
        unknown = sorted(set(tables) - set(configured))
        if unknown:
            raise ConfigError(
                f"table {unknown[0]!r} is not configured; configured: {', '.join(configured)}"
            )
        self.config = config
        self.sinks = sinks
        self.streams = streams
        self.dynamodb = dynamodb
        self.store = store
        self.options = options or PollOptions()
        self.tables = list(dict.fromkeys(tables)) or configured
        self.summary = RunSummary()
        self._region: str = streams.meta.region_name
        self._aws = Downstream("dynamodbstreams", config.resilience)
        self._checkpoint_guard = Downstream("checkpoints", config.resilience)
        self._unsaved: dict[tuple[str, str], ShardCheckpoint] = {}
        self._rng = random.Random()
        self._stopping = False
        self.on_batch = on_batch  # metrics observer
        self.last_pass_at = time.monotonic()  # for the health endpoint

    def stop(self) -> None:
        """Ask the loop to stop after the current batch; safe to call from a signal handler."""
        self._stopping = True

    def run(self) -> RunSummary:
        """Poll until stopped (or caught up with ``once``); checkpoints are saved on the way out."""
        streams = [self._open_stream(name) for name in self.tables]
        options = self.options
        log.info(
            "syncer run: tables %s, checkpoints in %s, batch size %d, batching window %g s%s",
            ", ".join(self.tables),
            self.store.describe(),
            options.batch_size,
            options.batching_window_s,
            ", until caught up" if options.once else "",
        )
        passes = 0
        try:
            while not self._stopping:
                if options.max_passes is not None and passes >= options.max_passes:
                    log.info("stopping after %d passes (max_passes)", passes)
                    break
                passes += 1
                self._pass(streams)
                if self._stopping:
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
            self._flush_unsaved()
            summary = self.summary
            log.info(
                "syncer run done: %d batches, %d records, %d failures retried, %d gaps, "
                "%d expired iterators, %d checkpoints saved",
                summary.batches,
                summary.records,
                summary.failures_retried,
                summary.gaps,
                summary.expired_iterators,
                summary.checkpoints_saved,
            )
        if self._unsaved:
            raise CheckpointError(
                f"{len(self._unsaved)} checkpoint(s) could not be saved to "
                f"{self.store.describe()}; the next run redelivers those records"
            )
        return self.summary

    # -- the loop ---------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the loop keeps passing and no downstream breaker is open."""
        stalled_s = time.monotonic() - self.last_pass_at
        limit_s = max(60.0, 3 * self.options.idle_sleep_s + self.config.resilience.max_retry_time_s)
        guards = (self.sinks.opensearch_guard, self.sinks.redis_guard, self.sinks.dynamodb_guard)
        open_breakers = [g.name for g in guards if g.breaker_state == "open"]
        healthy = stalled_s < limit_s and not open_breakers and not self._stopping
        detail = {
            "seconds_since_last_pass": round(stalled_s, 1),
            "open_breakers": open_breakers,
            "batches": self.summary.batches,
            "gaps": self.summary.gaps,
        }
        return healthy, detail

    def _pass(self, streams: Sequence[_Stream]) -> None:
        self.last_pass_at = time.monotonic()
        self._flush_unsaved()
        now = time.monotonic()
        for stream in streams:
            if now >= stream.next_describe:
                self._describe(stream)
        for stream in streams:
            for shard in self._readable(stream):
                if self._stopping:
                    return
                if time.monotonic() >= shard.not_before:
                    self._step(shard)

    def _step(self, shard: _Shard) -> None:
        """One read and, when the batch is ready, one process_batch for ``shard``."""
        got_nothing = False
        try:
            if shard.iterator is None and not shard.exhausted:
                shard.iterator = self._new_iterator(shard)
            if not shard.exhausted and not self._window_closed(shard):
                got_nothing = self._read(shard) == 0
        except ClientError as error:
            self._on_read_error(shard, error)
            return
        except Exception as error:  # noqa: BLE001 - a shard's read errors must not stop the others
            self._back_off(shard, f"reading the stream failed: {type(error).__name__}: {error}")
            return
        if shard.batch and (self._window_closed(shard) or (got_nothing and self.options.once)):
            self._dispatch(shard)
        if not shard.batch and shard.exhausted:
            self._finish(shard)

    def _read(self, shard: _Shard) -> int:
        """One GetRecords into the shard's batch; how many records came back."""
        options = self.options
        limit = min(GET_RECORDS_LIMIT, options.batch_size - len(shard.batch))
        response = self._call(self.streams.get_records, ShardIterator=shard.iterator, Limit=limit)
        records = response.get("Records", [])
        shard.iterator = response.get("NextShardIterator")
        shard.exhausted = shard.iterator is None
        now = time.monotonic()
        if records and not shard.batch:
            shard.batch_since = now
        shard.batch.extend(to_lambda_record(r, shard.stream.arn, self._region) for r in records)
        shard.caught_up = not records and not shard.batch
        if not records:
            pause = options.idle_sleep_s
            if shard.batch:
                pause = min(pause, shard.batch_since + options.batching_window_s - now)
            shard.not_before = now + max(0.0, pause)
        return len(records)

    def _window_closed(self, shard: _Shard) -> bool:
        """Whether the buffered batch must go now: full, window over, or the shard ended."""
        if not shard.batch:
            return False
        options = self.options
        return (
            len(shard.batch) >= options.batch_size
            or shard.exhausted
            or time.monotonic() - shard.batch_since >= options.batching_window_s
        )

    def _dispatch(self, shard: _Shard) -> None:
        records, shard.batch = shard.batch, []
        numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
        self.summary.batches += 1
        self.summary.records += len(records)
        try:
            outcome = process_batch(records, self.config, self.sinks)
        except Exception as error:  # the batch is retried, never skipped
            log.exception("%s: batch of %d records raised", shard.name, len(records))
            self._retry(shard, numbers[0], f"process_batch raised {type(error).__name__}")
            return
        if self.on_batch is not None:
            self.on_batch(outcome)
        advance = advance_after_batch(numbers, outcome.failed_sequence_numbers)
        self._log_batch(shard, numbers, outcome, advance)
        if advance.checkpoint is not None:
            self._set_checkpoint(shard, ShardCheckpoint(advance.checkpoint))
        if advance.retry_from is None:
            shard.failures = 0
        else:
            failed = len(outcome.failed_sequence_numbers)
            self._retry(shard, advance.retry_from, f"{failed} of {len(records)} records failed")

    def _finish(self, shard: _Shard) -> None:
        """The shard is closed and every record of it handled: children may start."""
        self._set_checkpoint(shard, ShardCheckpoint(shard.checkpoint.sequence_number, True))
        shard.stream.next_describe = 0.0  # look for its children now
        log.info("%s: finished (closed and fully handled)", shard.name)

    # -- positions, failures and gaps ----------------------------------------------------------

    def _new_iterator(self, shard: _Shard) -> str:
        sequence = shard.checkpoint.sequence_number
        if shard.position is not None:
            kind, sequence = shard.position
        elif sequence is not None:
            kind = "AFTER_SEQUENCE_NUMBER"
        else:
            kind = "TRIM_HORIZON"
        request: dict[str, Any] = {
            "StreamArn": shard.stream.arn,
            "ShardId": shard.shard_id,
            "ShardIteratorType": kind,
        }
        if kind != "TRIM_HORIZON":
            request["SequenceNumber"] = sequence
        iterator: str = self._call(self.streams.get_shard_iterator, **request)["ShardIterator"]
        shard.position = None
        return iterator

    def _reset(self, shard: _Shard, position: tuple[str, str | None] | None) -> None:
        """Drop the iterator and the unsent batch; the next read starts at ``position``."""
        shard.iterator = None
        shard.exhausted = False
        shard.batch = []
        shard.position = position
        shard.caught_up = False

    def _retry(self, shard: _Shard, retry_from: str, reason: str) -> None:
        shard.failures += 1
        self.summary.failures_retried += 1
        delay = backoff_delay_s(shard.failures, self.config.resilience, self._rng)
        shard.not_before = time.monotonic() + delay
        self._reset(shard, ("AT_SEQUENCE_NUMBER", retry_from))
        log.warning(
            "%s: %s; checkpoint stays at %s; retrying from %s in %.2f s (failure %d in a row)",
            shard.name,
            reason,
            shard.checkpoint.sequence_number or "the start (none yet)",
            retry_from,
            delay,
            shard.failures,
        )

    def _back_off(self, shard: _Shard, reason: str) -> None:
        shard.failures += 1
        delay = backoff_delay_s(shard.failures, self.config.resilience, self._rng)
        shard.not_before = time.monotonic() + delay
        self._reset(shard, shard.position)
        shard.stream.next_describe = 0.0  # the shard may be gone
        log.error("%s: %s; trying again in %.2f s", shard.name, reason, delay)

    def _on_read_error(self, shard: _Shard, error: Any) -> None:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ExpiredIteratorException":
            # Iterators live 15 minutes; a fresh one from the checkpoint loses nothing.
            self.summary.expired_iterators += 1
            self._reset(shard, None)
            log.warning(
                "%s: shard iterator expired; getting a new one after checkpoint %s",
                shard.name,
                shard.checkpoint.sequence_number or "(none: TRIM_HORIZON)",
            )
        elif code == "TrimmedDataAccessException":
            # The stream keeps records 24 hours; what lay between the checkpoint and the oldest
            # record left is gone, and the index may miss those changes until a full resync.
            self.summary.gaps += 1
            requested = shard.position[1] if shard.position else shard.checkpoint.sequence_number
            self._reset(shard, ("TRIM_HORIZON", None))
            log.warning(
                "GAP: table %s shard %s: checkpoint %s is older than the stream's retention "
                "(TrimmedDataAccessException); records after it were trimmed before syncer read "
                "them; continuing from the oldest available record (TRIM_HORIZON); gaps so far: %d",
                shard.stream.table,
                shard.shard_id,
                requested,
                self.summary.gaps,
            )
        else:
            self._back_off(shard, f"reading the stream failed: {code}: {error}")

    # -- checkpoints -----------------------------------------------------------------------

    def _set_checkpoint(self, shard: _Shard, checkpoint: ShardCheckpoint) -> None:
        shard.checkpoint = checkpoint
        self._unsaved[(shard.stream.arn, shard.shard_id)] = checkpoint
        self._flush_unsaved()

    def _flush_unsaved(self) -> None:
        """Save every checkpoint not saved yet; a failure keeps it for the next attempt."""
        for (stream_arn, shard_id), checkpoint in list(self._unsaved.items()):
            try:
                self._checkpoint_guard.call_with_retry(
                    self.store.save, stream_arn, shard_id, checkpoint
                )
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
            self.summary.checkpoints_saved += 1

    # -- streams and shards ------------------------------------------------------------------

    def _open_stream(self, table: str) -> _Stream:
        try:
            _, stream_arn = self._call(table_stream_arn, self.dynamodb, table)
        except RuntimeError as error:
            raise ConfigError(str(error)) from None
        except ClientError as error:
            raise ConfigError(f"cannot read table {table!r}: {error}") from None
        except Exception as error:  # say which table, keep the cause
            raise DownstreamUnavailableError(
                f"cannot reach DynamoDB for table {table!r}: {error}"
            ) from error
        return _Stream(table, stream_arn, self.store.load(stream_arn))

    def _describe(self, stream: _Stream) -> None:
        """DescribeStream, every page; add new shards, drop those the stream no longer has."""
        described: list[Mapping[str, Any]] = []
        start: dict[str, str] = {}
        try:
            while True:
                page = self._call(self.streams.describe_stream, StreamArn=stream.arn, **start)
                description = page["StreamDescription"]
                described.extend(description.get("Shards", []))
                last = description.get("LastEvaluatedShardId")
                if not last:
                    break
                start = {"ExclusiveStartShardId": last}
        except Exception as error:  # noqa: BLE001 - keep reading the shards already known
            stream.next_describe = time.monotonic() + max(self.options.idle_sleep_s, 1.0)
            log.error("table %s: DescribeStream failed: %s", stream.table, error)
            return
        ids = {shard["ShardId"] for shard in described}
        if ids:  # never prune on an empty answer
            self._forget_trimmed(stream, ids)
        for shard_id in list(stream.shards):
            shard = stream.shards[shard_id]
            if shard_id not in ids:
                del stream.shards[shard_id]
                if not shard.checkpoint.finished:
                    self.summary.gaps += 1
                    log.warning(
                        "GAP: table %s shard %s left the stream (trimmed) before syncer read it "
                        "to its end; checkpoint %s; gaps so far: %d",
                        stream.table,
                        shard_id,
                        shard.checkpoint.sequence_number,
                        self.summary.gaps,
                    )
        for raw in described:
            shard_id = raw["ShardId"]
            if shard_id not in stream.shards:
                saved = stream.saved.get(shard_id, ShardCheckpoint(None))
                stream.shards[shard_id] = _Shard(stream, shard_id, saved)
        stream.described = described
        stream.next_describe = time.monotonic() + self.options.describe_interval_s

    def _forget_trimmed(self, stream: _Stream, ids: set[str]) -> None:
        """Drop the saved checkpoints of shards the stream no longer has (trimmed after 24 h).

        Without this the store grows by every shard the stream ever had (a new one every few
        hours per partition). Such a checkpoint can never be used again: a child whose parent
        left the stream starts without waiting for it.
        """
        # The store holds what was loaded at start plus what this worker saved: only when one
        # of those shards left the stream is there anything to drop (no store I/O otherwise).
        if not (set(stream.saved) | set(stream.shards)) - ids:
            return
        try:
            gone = self.store.forget_others(stream.arn, ids)
        except Exception as error:  # noqa: BLE001 - housekeeping; the checkpoints stay as they were
            log.warning(
                "table %s: could not drop checkpoints of trimmed shards from %s: %s",
                stream.table,
                self.store.describe(),
                error,
            )
            return
        stream.saved = {k: v for k, v in stream.saved.items() if k in ids}
        if gone:
            log.info(
                "table %s: dropped the checkpoints of %d trimmed shard(s) from %s",
                stream.table,
                len(gone),
                self.store.describe(),
            )

    def _readable(self, stream: _Stream) -> list[_Shard]:
        finished = {i for i, shard in stream.shards.items() if shard.checkpoint.finished}
        return [stream.shards[i] for i in readable_shards(stream.described, finished)]

    def _all_caught_up(self, streams: Sequence[_Stream]) -> bool:
        return all(
            shard.caught_up and not shard.batch
            for stream in streams
            for shard in self._readable(stream)
        )

    def _next_wake(self, streams: Sequence[_Stream]) -> float:
        wakes = [stream.next_describe for stream in streams]
        wakes += [shard.not_before for stream in streams for shard in self._readable(stream)]
        return min([time.monotonic() + self.options.idle_sleep_s, *wakes])

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _SLEEP_SLICE_S))

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """An AWS call with the configured retry of transient errors (no breaker: a stream's
        expired-iterator and trimmed-data answers are expected, not signs of ill health)."""
        for attempt in self._aws.retrying():
            with attempt:
                return function(*args, **kwargs)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _log_batch(
        self, shard: _Shard, numbers: Sequence[str], outcome: BatchOutcome, advance: BatchAdvance
    ) -> None:
        log.info(
            "%s: %d records %s..%s: %d indexed, %d deleted, %d stale skipped, "
            "%d dead-lettered, %d failed; checkpoint %s",
            shard.name,
            len(numbers),
            numbers[0],
            numbers[-1],
            outcome.indexed,
            outcome.deleted,
            outcome.skipped_stale,
            outcome.dead_lettered,
            len(outcome.failed_sequence_numbers),
            advance.checkpoint or shard.checkpoint.sequence_number or "unchanged (none)",
        )


@contextlib.contextmanager
def stop_on_signals(poller: StreamPoller) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM ask ``poller`` to stop after its current batch.

    A second signal gets the previous handling back (SIGINT: KeyboardInterrupt; SIGTERM: exit),
    so a batch stuck in retries can still be cut short.
    """

    def request_stop(signum: int, frame: object) -> None:
        poller.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_poller(
    config: Config,
    options: PollOptions | None = None,
    *,
    tables: Sequence[str] = (),
    checkpoint_file: str | None = None,
    streams: Any | None = None,
    handle_signals: bool = False,
    metrics_port: int | None = None,
) -> RunSummary:
    """Build clients, sinks and the checkpoint store from ``config`` and run the poller.

    ``streams`` replaces the DynamoDB Streams client (tests wrap the real one to inject faults);
    ``checkpoint_file`` overrides ``[checkpoints]``. ``metrics_port`` serves ``/metrics``
    (Prometheus) and ``/healthz`` on loopback while the poller runs.
    """
    sinks = build_sinks(config)
    dynamodb = sinks.dynamodb if sinks.dynamodb is not None else aws_client("dynamodb")
    store = open_checkpoint_store(config.checkpoints, sinks.redis, checkpoint_file)
    poller = StreamPoller(
        config,
        sinks,
        streams if streams is not None else aws_client("dynamodbstreams"),
        dynamodb,
        store,
        options,
        tables,
    )
    server = None
    if metrics_port is not None:
        from syncer.metrics import PrometheusMetrics, serve_http

        metrics = PrometheusMetrics()
        poller.on_batch = metrics.observe
        try:
            server = serve_http(metrics, poller.health, metrics_port)
        except OSError as error:
            raise ConfigError(
                f"cannot serve metrics on 127.0.0.1:{metrics_port} ({error}); "
                "choose another --metrics-port, or 0 to turn it off"
            ) from None
        log.info(
            "metrics on http://127.0.0.1:%d/metrics, health on /healthz", server.server_address[1]
        )
    try:
        if not handle_signals:
            return poller.run()
        with stop_on_signals(poller):
            return poller.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
