"""The shard cursor's transitions as a table: state x event -> state, actions; no I/O."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from syncer.runner.cursor import (
    TRIM_HORIZON,
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
    IteratorObtained,
    Pause,
    Phase,
    ProcessBatch,
    ReadFailed,
    ReadRecords,
    RecordsRead,
    RetryFrom,
    SaveCheckpoint,
    ShardCursor,
    StartAt,
    UnexpectedEventError,
    Visit,
    step,
)
from syncer.sinks.checkpoints import ShardCheckpoint as CP

NO_WINDOW = Batching(batch_size=3, window_s=0.0, idle_sleep_s=1.0)
WINDOW = Batching(batch_size=3, window_s=10.0, idle_sleep_s=1.0)
ONCE = Batching(batch_size=3, window_s=10.0, idle_sleep_s=1.0, once=True)
AHEAD = Batching(batch_size=2, read_limit=5, read_ahead=True)
REPLAY_START = StartAt("AT_TIMESTAMP", timestamp_s=1_764_576_000.0)
# Kinesis: a replay's AT_TIMESTAMP start, and a pause between reads that returned records
KINESIS = Batching(
    batch_size=3, window_s=0.0, starting_position=REPLAY_START, min_read_interval_s=0.2
)


def _record(sequence_number: str) -> dict[str, Any]:
    return {"eventName": "INSERT", "dynamodb": {"SequenceNumber": sequence_number}}


R11, R12, R13 = _record("11"), _record("12"), _record("13")


def at(sequence_number: str) -> StartAt:
    return StartAt("AT_SEQUENCE_NUMBER", sequence_number)


def cursor(phase: Phase, **fields: Any) -> ShardCursor:
    """A cursor at checkpoint 10, reading with iterator it-1 and no window, unless told."""
    reading = phase in (Phase.READING, Phase.CAUGHT_UP, Phase.SENDING)
    defaults: dict[str, Any] = {
        "checkpoint": CP("10"),
        "batching": NO_WINDOW,
        "iterator": "it-1" if reading else None,
    }
    return ShardCursor(phase, **{**defaults, **fields})


@dataclass(frozen=True)
class Row:
    name: str
    before: ShardCursor
    event: Event
    after: ShardCursor
    actions: tuple[Action, ...]


READ_FAILED_OTHER = ReadFailed("", "ConnectionError: reset by peer")
OTHER_REASON = "reading the stream failed: ConnectionError: reset by peer"

TABLE = [
    # -- a visit ---------------------------------------------------------------------------
    Row(
        "a fresh shard asks for an iterator at TRIM_HORIZON",
        cursor(Phase.NEEDS_ITERATOR, checkpoint=CP(None)),
        Visit(5.0),
        cursor(Phase.NEEDS_ITERATOR, checkpoint=CP(None)),
        (GetIterator(TRIM_HORIZON),),
    ),
    Row(
        "a replay's fresh shard asks for an iterator at its starting position",
        cursor(Phase.NEEDS_ITERATOR, checkpoint=CP(None), batching=KINESIS),
        Visit(5.0),
        cursor(Phase.NEEDS_ITERATOR, checkpoint=CP(None), batching=KINESIS),
        (GetIterator(REPLAY_START),),
    ),
    Row(
        "a checkpointed replay shard resumes after its checkpoint",
        cursor(Phase.NEEDS_ITERATOR, batching=KINESIS),
        Visit(5.0),
        cursor(Phase.NEEDS_ITERATOR, batching=KINESIS),
        (GetIterator(StartAt("AFTER_SEQUENCE_NUMBER", "10")),),
    ),
    Row(
        "a checkpointed shard asks for an iterator after its checkpoint",
        cursor(Phase.NEEDS_ITERATOR),
        Visit(5.0),
        cursor(Phase.NEEDS_ITERATOR),
        (GetIterator(StartAt("AFTER_SEQUENCE_NUMBER", "10")),),
    ),
    Row(
        "a retrying shard asks for an iterator at the record to retry",
        cursor(Phase.NEEDS_ITERATOR, start=at("12")),
        Visit(5.0),
        cursor(Phase.NEEDS_ITERATOR, start=at("12")),
        (GetIterator(at("12")),),
    ),
    Row(
        "a reading shard reads what the batch still has room for",
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=4.0),
        Visit(5.0),
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=4.0),
        (ReadRecords("it-1", 2),),
    ),
    Row(
        "a read asks for at most GetRecords' 1,000 records",
        cursor(Phase.READING, batching=Batching(batch_size=5000)),
        Visit(5.0),
        cursor(Phase.READING, batching=Batching(batch_size=5000)),
        (ReadRecords("it-1", 1000),),
    ),
    Row(
        "a gathered batch whose window is over is sent without reading",
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=0.0),
        Visit(10.0),
        cursor(Phase.SENDING, batching=WINDOW, batch=(R11,), batch_since=0.0),
        (ProcessBatch((R11,)),),
    ),
    Row(
        "a caught-up shard reads again",
        cursor(Phase.CAUGHT_UP),
        Visit(5.0),
        cursor(Phase.CAUGHT_UP),
        (ReadRecords("it-1", 3),),
    ),
    Row(
        "a finished shard does nothing",
        cursor(Phase.FINISHED, checkpoint=CP("10", True)),
        Visit(5.0),
        cursor(Phase.FINISHED, checkpoint=CP("10", True)),
        (),
    ),
    # -- an iterator -----------------------------------------------------------------------
    Row(
        "a new iterator is read at once and the retry position is spent",
        cursor(Phase.NEEDS_ITERATOR, start=at("12"), failures=2),
        IteratorObtained("it-1", 5.0),
        cursor(Phase.READING, failures=2),
        (ReadRecords("it-1", 3),),
    ),
    # -- records read ----------------------------------------------------------------------
    Row(
        "without a window each read is a batch",
        cursor(Phase.READING),
        RecordsRead((R11, R12), "it-2", 5.0),
        cursor(Phase.SENDING, iterator="it-2", batch=(R11, R12), batch_since=5.0),
        (ProcessBatch((R11, R12)),),
    ),
    Row(
        "new records after catching up are sent",
        cursor(Phase.CAUGHT_UP),
        RecordsRead((R11,), "it-2", 5.0),
        cursor(Phase.SENDING, iterator="it-2", batch=(R11,), batch_since=5.0),
        (ProcessBatch((R11,)),),
    ),
    Row(
        "with a window a read is gathered",
        cursor(Phase.READING, batching=WINDOW),
        RecordsRead((R11,), "it-2", 5.0),
        cursor(Phase.READING, batching=WINDOW, iterator="it-2", batch=(R11,), batch_since=5.0),
        (),
    ),
    Row(
        "a read that fills the batch sends it",
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=4.0),
        RecordsRead((R12, R13), "it-2", 5.0),
        cursor(
            Phase.SENDING, batching=WINDOW, iterator="it-2", batch=(R11, R12, R13), batch_since=4.0
        ),
        (ProcessBatch((R11, R12, R13)),),
    ),
    Row(
        "an empty read with nothing gathered is caught up and pauses the idle sleep",
        cursor(Phase.READING),
        RecordsRead((), "it-2", 5.0),
        cursor(Phase.CAUGHT_UP, iterator="it-2"),
        (Pause(6.0),),
    ),
    Row(
        "an empty read with records further on is not caught up and reads again at once",
        cursor(Phase.READING),
        RecordsRead((), "it-2", 5.0, more_follow=True),
        cursor(Phase.READING, iterator="it-2"),
        (),
    ),
    Row(
        "a Kinesis shard pauses between reads that returned records",
        cursor(Phase.READING, batching=KINESIS),
        RecordsRead((R11,), "it-2", 5.0),
        cursor(Phase.SENDING, batching=KINESIS, iterator="it-2", batch=(R11,), batch_since=5.0),
        (Pause(5.2), ProcessBatch((R11,))),
    ),
    Row(
        "a read-ahead shard reads up to its read limit whatever room the batch has",
        cursor(Phase.READING, batching=AHEAD),
        Visit(5.0),
        cursor(Phase.READING, batching=AHEAD),
        (ReadRecords("it-1", 5),),
    ),
    Row(
        "a read larger than the batch sends a full batch and keeps the rest ahead",
        cursor(Phase.READING, batching=AHEAD),
        RecordsRead((R11, R12, R13), "it-2", 5.0),
        cursor(
            Phase.SENDING,
            batching=AHEAD,
            iterator="it-2",
            batch=(R11, R12),
            batch_since=5.0,
            ahead=(R13,),
        ),
        (ProcessBatch((R11, R12)),),
    ),
    Row(
        "the last read of a closed shard larger than the batch is not its last batch yet",
        cursor(Phase.READING, batching=AHEAD),
        RecordsRead((R11, R12, R13), None, 5.0),
        cursor(
            Phase.SENDING,
            batching=AHEAD,
            iterator=None,
            batch=(R11, R12),
            batch_since=5.0,
            ahead=(R13,),
        ),
        (ProcessBatch((R11, R12)),),
    ),
    Row(
        "records waiting ahead are sent before any read",
        cursor(Phase.READING, batching=AHEAD, ahead=(R13,)),
        Visit(6.0),
        cursor(Phase.SENDING, batching=AHEAD, batch=(R13,), batch_since=6.0),
        (ProcessBatch((R13,)),),
    ),
    Row(
        "the records ahead of a closed shard are its last batch",
        cursor(Phase.READING, batching=AHEAD, iterator=None, ahead=(R13,)),
        Visit(6.0),
        cursor(Phase.SENDING_LAST, batching=AHEAD, iterator=None, batch=(R13,), batch_since=6.0),
        (ProcessBatch((R13,)),),
    ),
    Row(
        "an empty read pauses no longer than the batching window has left",
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=0.0),
        RecordsRead((), "it-2", 9.5),
        cursor(Phase.READING, batching=WINDOW, iterator="it-2", batch=(R11,), batch_since=0.0),
        (Pause(10.0),),
    ),
    Row(
        "with once an empty read sends what was gathered",
        cursor(Phase.READING, batching=ONCE, batch=(R11,), batch_since=4.0),
        RecordsRead((), "it-2", 5.0),
        cursor(Phase.SENDING, batching=ONCE, iterator="it-2", batch=(R11,), batch_since=4.0),
        (Pause(6.0), ProcessBatch((R11,))),
    ),
    Row(
        "the last records of a closed shard are sent as its last batch",
        cursor(Phase.READING, batching=WINDOW),
        RecordsRead((R11,), None, 5.0),
        cursor(Phase.SENDING_LAST, batching=WINDOW, batch=(R11,), batch_since=5.0),
        (ProcessBatch((R11,)),),
    ),
    Row(
        "a closed shard read to its end with nothing gathered is finished",
        cursor(Phase.READING),
        RecordsRead((), None, 5.0),
        cursor(Phase.FINISHED, checkpoint=CP("10", True)),
        (Pause(6.0), SaveCheckpoint(CP("10", True)), Finished(), DescribeSoon()),
    ),
    # -- a batch handled -------------------------------------------------------------------
    Row(
        "a fully acknowledged batch checkpoints its last record and reading goes on",
        cursor(Phase.SENDING, batch=(R11, R12, R13), failures=2),
        BatchHandled(()),
        cursor(Phase.READING, checkpoint=CP("13")),
        (SaveCheckpoint(CP("13")),),
    ),
    Row(
        "a partial failure checkpoints before the lowest failed record and retries from it",
        cursor(Phase.SENDING, batch=(R11, R12, R13)),
        BatchHandled(("13", "12")),
        cursor(Phase.NEEDS_ITERATOR, checkpoint=CP("11"), start=at("12"), failures=1),
        (SaveCheckpoint(CP("11")), RetryFrom("12", "2 of 3 records failed", 1)),
    ),
    Row(
        "a failed first record leaves the checkpoint and the whole batch is read again",
        cursor(Phase.SENDING, batch=(R11, R12, R13)),
        BatchHandled(("11",)),
        cursor(Phase.NEEDS_ITERATOR, start=at("11"), failures=1),
        (RetryFrom("11", "1 of 3 records failed", 1),),
    ),
    Row(
        "a closed shard whose last batch is acknowledged is finished and its children looked for",
        cursor(Phase.SENDING_LAST, batch=(R11,)),
        BatchHandled(()),
        cursor(Phase.FINISHED, checkpoint=CP("11", True)),
        (SaveCheckpoint(CP("11")), SaveCheckpoint(CP("11", True)), Finished(), DescribeSoon()),
    ),
    Row(
        "a closed shard whose last batch partly failed reads again from the failed record",
        cursor(Phase.SENDING_LAST, batch=(R11, R12)),
        BatchHandled(("12",)),
        cursor(Phase.NEEDS_ITERATOR, checkpoint=CP("11"), start=at("12"), failures=1),
        (SaveCheckpoint(CP("11")), RetryFrom("12", "1 of 2 records failed", 1)),
    ),
    Row(
        "a raised batch is retried whole without a checkpoint, one more failure in a row",
        cursor(Phase.SENDING, batch=(R11, R12), failures=1),
        BatchRaised("RuntimeError"),
        cursor(Phase.NEEDS_ITERATOR, start=at("11"), failures=2),
        (RetryFrom("11", "process_batch raised RuntimeError", 2),),
    ),
    Row(
        "a raised last batch of a closed shard is retried whole",
        cursor(Phase.SENDING_LAST, batch=(R11,)),
        BatchRaised("RuntimeError"),
        cursor(Phase.NEEDS_ITERATOR, start=at("11"), failures=1),
        (RetryFrom("11", "process_batch raised RuntimeError", 1),),
    ),
    # -- a read failed ---------------------------------------------------------------------
    Row(
        "an expired iterator restarts after the checkpoint and drops what was gathered",
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=4.0, failures=1),
        ReadFailed("ExpiredIteratorException", "ExpiredIteratorException: too old"),
        cursor(Phase.NEEDS_ITERATOR, batching=WINDOW, batch_since=4.0, failures=1),
        (IteratorExpired(),),
    ),
    Row(
        "an iterator that expired while caught up is replaced",
        cursor(Phase.CAUGHT_UP),
        ReadFailed("ExpiredIteratorException", "ExpiredIteratorException: too old"),
        cursor(Phase.NEEDS_ITERATOR),
        (IteratorExpired(),),
    ),
    Row(
        "a trimmed checkpoint is a gap and reading restarts at TRIM_HORIZON",
        cursor(Phase.NEEDS_ITERATOR),
        ReadFailed("TrimmedDataAccessException", "TrimmedDataAccessException: gone"),
        cursor(Phase.NEEDS_ITERATOR, start=TRIM_HORIZON),
        (DataTrimmed("10"),),
    ),
    Row(
        "a trimmed retry position names that position as the gap's start",
        cursor(Phase.NEEDS_ITERATOR, start=at("12")),
        ReadFailed("TrimmedDataAccessException", "TrimmedDataAccessException: gone"),
        cursor(Phase.NEEDS_ITERATOR, start=TRIM_HORIZON),
        (DataTrimmed("12"),),
    ),
    Row(
        "another error getting an iterator backs off and keeps the start",
        cursor(Phase.NEEDS_ITERATOR, start=at("12"), failures=1),
        READ_FAILED_OTHER,
        cursor(Phase.NEEDS_ITERATOR, start=at("12"), failures=2),
        (BackOff(OTHER_REASON, 2), DescribeSoon()),
    ),
    Row(
        "another error reading drops the iterator and what was gathered, then backs off",
        cursor(Phase.READING, batching=WINDOW, batch=(R11,), batch_since=4.0),
        READ_FAILED_OTHER,
        cursor(Phase.NEEDS_ITERATOR, batching=WINDOW, batch_since=4.0, failures=1),
        (BackOff(OTHER_REASON, 1), DescribeSoon()),
    ),
]


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
def test_transition(row: Row) -> None:
    """Each row: the cursor before, the event, the cursor after and the actions, in order."""
    assert step(row.before, row.event) == (row.after, row.actions)


SAMPLE_EVENTS: list[Event] = [
    Visit(5.0),
    IteratorObtained("it-9", 5.0),
    RecordsRead((R11,), "it-9", 5.0),
    READ_FAILED_OTHER,
    BatchHandled(()),
    BatchRaised("RuntimeError"),
]
COVERED = {(row.before.phase, type(row.event)) for row in TABLE}
IMPOSSIBLE = [
    (phase, event)
    for phase, event in itertools.product(Phase, SAMPLE_EVENTS)
    if (phase, type(event)) not in COVERED
]


@pytest.mark.parametrize(
    ("phase", "event"), IMPOSSIBLE, ids=[f"{p.name}-{type(e).__name__}" for p, e in IMPOSSIBLE]
)
def test_every_pair_not_in_the_table_is_refused(phase: Phase, event: Event) -> None:
    """A phase x event pair the table leaves out cannot happen, and step says so loudly."""
    batch = (R11,) if phase in (Phase.SENDING, Phase.SENDING_LAST) else ()
    with pytest.raises(UnexpectedEventError):
        step(cursor(phase, batch=batch), event)


def test_the_table_covers_every_event_and_phase() -> None:
    """Every phase and every kind of event appears in at least one row of the table."""
    assert {phase for phase, _ in COVERED} == set(Phase)
    assert {kind for _, kind in COVERED} == {type(event) for event in SAMPLE_EVENTS}


def test_a_saved_checkpoint_decides_the_first_phase() -> None:
    """A shard first seen starts finished when its checkpoint says so, else needs an iterator."""
    assert ShardCursor.from_checkpoint(CP("5", True), NO_WINDOW).phase is Phase.FINISHED
    assert ShardCursor.from_checkpoint(CP("5"), NO_WINDOW).phase is Phase.NEEDS_ITERATOR


def _kinesis_record(sequence_number: str) -> dict[str, Any]:
    return {"eventSource": "aws:kinesis", "kinesis": {"sequenceNumber": sequence_number}}


def test_a_kinesis_batch_is_placed_by_its_kinesis_sequence_numbers() -> None:
    """Kinesis records have no dynamodb.SequenceNumber: their kinesis.sequenceNumber places them."""
    records = tuple(_kinesis_record(n) for n in ("11", "12", "13"))
    sending = cursor(Phase.SENDING, batch=records)
    after, actions = step(sending, BatchHandled(("13", "12")))
    assert after.checkpoint == CP("11")
    assert after.start == at("12")
    assert actions == (SaveCheckpoint(CP("11")), RetryFrom("12", "2 of 3 records failed", 1))


def test_a_handled_batch_keeps_the_records_ahead_and_a_failure_drops_them() -> None:
    """Success: back to READING with the rest ahead. A failure: read again from the lowest
    failed record, so the records ahead are dropped with the batch."""
    sending = cursor(Phase.SENDING, batching=AHEAD, batch=(R11, R12), ahead=(R13,))
    handled, _ = step(sending, BatchHandled(()))
    assert (handled.phase, handled.batch, handled.ahead) == (Phase.READING, (), (R13,))
    failed, actions = step(sending, BatchHandled(("12",)))
    assert (failed.phase, failed.batch, failed.ahead) == (Phase.NEEDS_ITERATOR, (), ())
    assert failed.start == at("12")
    assert actions[0] == SaveCheckpoint(CP("11"))
