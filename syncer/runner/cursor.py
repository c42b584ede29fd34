"""A shard's read position as named states and pure transitions: ``step(cursor, event)``.

The poll loop (``syncer.runner.poller``) does the I/O that the returned actions ask for and feeds back
what came of it as the next event; everything it decides about a shard is decided here:

    NEEDS_ITERATOR --IteratorObtained--> READING --RecordsRead--> READING (gathering a batch)
                                                              --> CAUGHT_UP (nothing new)
                                                              --> SENDING / SENDING_LAST
    SENDING --BatchHandled (all)--> READING        SENDING_LAST --BatchHandled (all)--> FINISHED
    SENDING* --BatchHandled (some failed) / BatchRaised--> NEEDS_ITERATOR AT the lowest failure
    any reading state --ReadFailed--> NEEDS_ITERATOR (expired: after the checkpoint; trimmed:
                                      TRIM_HORIZON; other: the same start, after a backoff)

A shard without a checkpoint starts at ``Batching.starting_position`` (TRIM_HORIZON; a Kinesis
replay's AT_TIMESTAMP). A Kinesis shard reads ahead (``Batching.read_ahead``): one GetRecords
may fill several batches; the records past the first wait in ``ahead`` and are sent, batch by
batch, on the next visits, before any other read; a failure drops them with the batch. The
records are Lambda-shaped DynamoDB Streams or Kinesis records; a Kinesis record's position is
its ``kinesis.sequenceNumber``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from syncer.core.kinesis import KINESIS_SOURCE
from syncer.sinks.checkpoints import ShardCheckpoint

GET_RECORDS_LIMIT = 1000  # DynamoDB Streams' GetRecords returns at most 1,000 records per call
KINESIS_GET_RECORDS_LIMIT = 10_000  # Kinesis' GetRecords: at most 10,000
KINESIS_MIN_READ_INTERVAL_S = 0.2  # Kinesis: 5 GetRecords a second per shard

Record = Mapping[str, Any]  # a stream record shaped as Lambda delivers it


class Phase(Enum):
    """Where a shard's reading stands."""

    NEEDS_ITERATOR = "needs iterator"  # the next visit asks GetShardIterator at ``start``
    READING = "reading"  # an iterator in hand; a batch may be gathering
    CAUGHT_UP = "caught up"  # the last GetRecords returned nothing and nothing is buffered
    SENDING = "sending"  # the batch is with process_batch
    SENDING_LAST = "sending last"  # the same, and the shard is closed (no next iterator)
    FINISHED = "finished"  # closed and every record handled: children may start


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where the next shard iterator starts (GetShardIterator's ShardIteratorType)."""

    kind: str  # TRIM_HORIZON, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP
    sequence_number: str | None = None
    timestamp_s: float | None = None  # AT_TIMESTAMP only (Kinesis): epoch seconds


TRIM_HORIZON = StartAt("TRIM_HORIZON")


@dataclass(frozen=True, slots=True)
class Batching:
    """How records are gathered into batches, and where a shard without a checkpoint starts
    (Lambda's event source mapping knobs)."""

    batch_size: int = 100
    window_s: float = 0.0  # 0: send what one GetRecords returned
    idle_sleep_s: float = 1.0  # pause of a shard after a GetRecords with no records
    once: bool = False  # a read that returned nothing sends the batch at once (drain and stop)
    starting_position: StartAt = TRIM_HORIZON  # a Kinesis replay: AT_TIMESTAMP
    read_limit: int = GET_RECORDS_LIMIT  # the most records one GetRecords may return
    # Kinesis allows 5 GetRecords a second per shard: a shard whose read returned records
    # pauses this long before its next read (0: none, DynamoDB Streams).
    min_read_interval_s: float = 0.0
    # Read up to ``read_limit`` whatever room the batch has; what a full batch cannot take waits
    # in ``ShardCursor.ahead`` for the next batches (Kinesis: few reads, so each reads much).
    read_ahead: bool = False


@dataclass(frozen=True, slots=True)
class ShardCursor:
    """A shard's whole reading state; ``step`` makes the next one."""

    phase: Phase
    checkpoint: ShardCheckpoint
    batching: Batching = Batching()
    iterator: str | None = None
    start: StartAt | None = None  # None: after the checkpoint (TRIM_HORIZON without one)
    batch: tuple[Record, ...] = ()  # gathered, or with process_batch while SENDING
    batch_since: float = 0.0  # when the first record of ``batch`` was read
    failures: int = 0  # failed attempts in a row (reads or batches); 0 after a handled batch
    ahead: tuple[Record, ...] = ()  # read past a full batch (``read_ahead``): the next batches

    @classmethod
    def from_checkpoint(cls, checkpoint: ShardCheckpoint, batching: Batching) -> ShardCursor:
        """A cursor for a shard first seen, at its saved checkpoint."""
        phase = Phase.FINISHED if checkpoint.finished else Phase.NEEDS_ITERATOR
        return cls(phase, checkpoint, batching)

    def next_start(self) -> StartAt:
        """Where GetShardIterator should start: ``start``, else after the checkpoint, else at
        the starting position."""
        if self.start is not None:
            return self.start
        if self.checkpoint.sequence_number is not None:
            return StartAt("AFTER_SEQUENCE_NUMBER", self.checkpoint.sequence_number)
        return self.batching.starting_position


# -- events: what happened -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    """The loop reached the shard and its pause is over."""

    now: float


@dataclass(frozen=True, slots=True)
class IteratorObtained:
    """GetShardIterator answered."""

    iterator: str
    now: float


@dataclass(frozen=True, slots=True)
class RecordsRead:
    """GetRecords answered; ``next_iterator`` is None when the shard is closed and read out.

    ``more_follow``: the source says records lie further on even though this read returned
    none (Kinesis' ``MillisBehindLatest`` above 0 across an idle stretch of the shard), so the
    shard is not caught up and is read again without the idle pause.
    """

    records: tuple[Record, ...]
    next_iterator: str | None
    now: float
    more_follow: bool = False


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """GetShardIterator or GetRecords raised; ``code`` is the AWS error code, if any."""

    code: str
    detail: str  # for the log line: "Code: message" or "ExceptionType: message"


@dataclass(frozen=True, slots=True)
class BatchHandled:
    """process_batch returned; ``failed`` are the sequence numbers it reported for retry."""

    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BatchRaised:
    """process_batch raised (the batch is retried whole, never skipped)."""

    error_type: str


Event = Visit | IteratorObtained | RecordsRead | ReadFailed | BatchHandled | BatchRaised

# -- actions: what the loop must do ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetIterator:
    start: StartAt


@dataclass(frozen=True, slots=True)
class ReadRecords:
    iterator: str
    limit: int


@dataclass(frozen=True, slots=True)
class ProcessBatch:
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class SaveCheckpoint:
    checkpoint: ShardCheckpoint


@dataclass(frozen=True, slots=True)
class Pause:
    """Do not visit the shard again before ``until`` (monotonic seconds)."""

    until: float


@dataclass(frozen=True, slots=True)
class RetryFrom:
    """A batch failed: wait the backoff of the ``failures``-th failure in a row, then re-read."""

    sequence_number: str
    reason: str
    failures: int


@dataclass(frozen=True, slots=True)
class BackOff:
    """Reading failed: wait the backoff of the ``failures``-th failure in a row."""

    reason: str
    failures: int


@dataclass(frozen=True, slots=True)
class IteratorExpired:
    """Iterators live 15 minutes; a fresh one after the checkpoint loses nothing."""


@dataclass(frozen=True, slots=True)
class DataTrimmed:
    """The stream no longer holds the records after ``requested``: a gap; reading restarts at
    TRIM_HORIZON."""

    requested: str | None


@dataclass(frozen=True, slots=True)
class Finished:
    """The shard is closed and fully handled."""


@dataclass(frozen=True, slots=True)
class DescribeSoon:
    """Look at the stream's shards now (a finished shard's children; a shard that may be gone)."""


Action = (
    GetIterator
    | ReadRecords
    | ProcessBatch
    | SaveCheckpoint
    | Pause
    | RetryFrom
    | BackOff
    | IteratorExpired
    | DataTrimmed
    | Finished
    | DescribeSoon
)
Step = tuple[ShardCursor, tuple[Action, ...]]


class UnexpectedEventError(Exception):
    """An event that cannot happen in the cursor's phase: a bug in the loop, never input."""


# -- after a batch ---------------------------------------------------------------------------


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


def sequence_number(record: Record) -> str:
    """A record's position in its shard: ``kinesis.sequenceNumber`` for a Kinesis record (also
    its itemIdentifier), else ``dynamodb.SequenceNumber``."""
    if record.get("eventSource") == KINESIS_SOURCE:
        return str(record["kinesis"]["sequenceNumber"])
    return str(record["dynamodb"]["SequenceNumber"])


def sequence_numbers(records: Sequence[Record]) -> list[str]:
    """The records' sequence numbers, in shard order."""
    return [sequence_number(record) for record in records]


# -- the transitions -------------------------------------------------------------------------

_READING_PHASES = (Phase.READING, Phase.CAUGHT_UP)
_SENDING_PHASES = (Phase.SENDING, Phase.SENDING_LAST)


def step(cursor: ShardCursor, event: Event) -> Step:
    """The shard's next state and what the loop must do for it; raises only on a loop bug."""
    phase = cursor.phase
    match event:
        case Visit() if phase is Phase.FINISHED:
            return cursor, ()
        case Visit() if phase is Phase.NEEDS_ITERATOR:
            return cursor, (GetIterator(cursor.next_start()),)
        case Visit(now) if phase in _READING_PHASES:
            return _read_or_send(cursor, now)
        case IteratorObtained(iterator, now) if phase is Phase.NEEDS_ITERATOR:
            reading = replace(cursor, phase=Phase.READING, iterator=iterator, start=None)
            return _read_or_send(reading, now)
        case RecordsRead() if phase in _READING_PHASES:
            return _records_read(cursor, event)
        case ReadFailed() if phase is Phase.NEEDS_ITERATOR or phase in _READING_PHASES:
            return _read_failed(cursor, event)
        case BatchHandled(failed) if phase in _SENDING_PHASES:
            return _batch_handled(cursor, failed)
        case BatchRaised(error_type) if phase in _SENDING_PHASES:
            first = sequence_numbers(cursor.batch)[0]
            return _retry(cursor, first, f"process_batch raised {error_type}", ())
    raise UnexpectedEventError(f"{type(event).__name__} in phase {phase.value}")


def _window_closed(cursor: ShardCursor, now: float, closed: bool) -> bool:
    """Whether the gathered batch must go now: full, window over, or the shard ended."""
    if not cursor.batch:
        return False
    batching = cursor.batching
    return (
        len(cursor.batch) >= batching.batch_size
        or closed
        or now - cursor.batch_since >= batching.window_s
    )


def _send(cursor: ShardCursor, closed: bool, actions: tuple[Action, ...]) -> Step:
    phase = Phase.SENDING_LAST if closed else Phase.SENDING
    return replace(cursor, phase=phase), (*actions, ProcessBatch(cursor.batch))


def _read_or_send(cursor: ShardCursor, now: float) -> Step:
    if cursor.ahead:  # records already read come first (batch is empty: it was just handled)
        size = cursor.batching.batch_size
        batch, ahead = cursor.ahead[:size], cursor.ahead[size:]
        closed = cursor.iterator is None and not ahead
        return _send(replace(cursor, batch=batch, ahead=ahead, batch_since=now), closed, ())
    if _window_closed(cursor, now, closed=False):
        return _send(cursor, False, ())
    if cursor.iterator is None:  # the reading phases hold one unless records wait ahead
        raise UnexpectedEventError(f"phase {cursor.phase.value} without an iterator")
    batching = cursor.batching
    limit = batching.read_limit
    if not batching.read_ahead:
        limit = min(limit, batching.batch_size - len(cursor.batch))
    return cursor, (ReadRecords(cursor.iterator, limit),)


def _records_read(cursor: ShardCursor, event: RecordsRead) -> Step:
    batching, now = cursor.batching, event.now
    closed = event.next_iterator is None
    since = now if event.records and not cursor.batch else cursor.batch_since
    batch = cursor.batch + event.records
    ahead = batch[batching.batch_size :]  # only a read-ahead read can overfill the batch
    batch = batch[: batching.batch_size]
    actions: tuple[Action, ...] = ()
    idle = not event.records and not event.more_follow
    if idle:
        pause = batching.idle_sleep_s
        if batch:
            pause = min(pause, since + batching.window_s - now)
        actions = (Pause(now + max(0.0, pause)),)
    elif batching.min_read_interval_s > 0:
        actions = (Pause(now + batching.min_read_interval_s),)
    caught_up = idle and not batch
    phase = Phase.CAUGHT_UP if caught_up else Phase.READING
    after = replace(
        cursor,
        phase=phase,
        iterator=event.next_iterator,
        batch=batch,
        batch_since=since,
        ahead=ahead,
    )
    if batch and (_window_closed(after, now, closed) or (idle and batching.once)):
        return _send(after, closed and not ahead, actions)
    if not batch and closed:
        return _finish(after, actions)
    return after, actions


def _finish(cursor: ShardCursor, actions: tuple[Action, ...]) -> Step:
    checkpoint = ShardCheckpoint(cursor.checkpoint.sequence_number, True)
    finished = replace(cursor, phase=Phase.FINISHED, checkpoint=checkpoint, iterator=None)
    return finished, (*actions, SaveCheckpoint(checkpoint), Finished(), DescribeSoon())


def _batch_handled(cursor: ShardCursor, failed: tuple[str, ...]) -> Step:
    numbers = sequence_numbers(cursor.batch)
    advance = advance_after_batch(numbers, failed)
    actions: tuple[Action, ...] = ()
    if advance.checkpoint is not None:
        cursor = replace(cursor, checkpoint=ShardCheckpoint(advance.checkpoint))
        actions = (SaveCheckpoint(cursor.checkpoint),)
    if advance.retry_from is not None:
        reason = f"{len(failed)} of {len(numbers)} records failed"
        return _retry(cursor, advance.retry_from, reason, actions)
    handled = replace(cursor, batch=(), failures=0)
    if cursor.phase is Phase.SENDING_LAST:
        return _finish(handled, actions)
    return replace(handled, phase=Phase.READING), actions


def _reset(cursor: ShardCursor, start: StartAt | None, failures: int) -> ShardCursor:
    """Drop the iterator and the unsent records; the next read starts at ``start``."""
    return replace(
        cursor,
        phase=Phase.NEEDS_ITERATOR,
        iterator=None,
        start=start,
        batch=(),
        ahead=(),
        failures=failures,
    )


def _retry(cursor: ShardCursor, retry_from: str, reason: str, actions: tuple[Action, ...]) -> Step:
    failures = cursor.failures + 1
    retrying = _reset(cursor, StartAt("AT_SEQUENCE_NUMBER", retry_from), failures)
    return retrying, (*actions, RetryFrom(retry_from, reason, failures))


def _read_failed(cursor: ShardCursor, event: ReadFailed) -> Step:
    if event.code == "ExpiredIteratorException":
        return _reset(cursor, None, cursor.failures), (IteratorExpired(),)
    if event.code == "TrimmedDataAccessException":
        # The stream keeps records 24 hours; what lay between the checkpoint and the oldest
        # record left is gone, and the index may miss those changes until a full resync.
        requested = cursor.next_start().sequence_number
        return _reset(cursor, TRIM_HORIZON, cursor.failures), (DataTrimmed(requested),)
    failures = cursor.failures + 1
    reason = f"reading the stream failed: {event.detail}"
    return _reset(cursor, cursor.start, failures), (BackOff(reason, failures), DescribeSoon())
