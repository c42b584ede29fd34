"""syncer's KCL record processor: what it checkpoints, retries and refuses (no daemon, no Java).

A fake checkpointer answers as the MultiLangDaemon does (amazon-kclpy raises
``CheckpointError(name)``); a fake ``process`` answers as ``process_batch`` does.
"""

from __future__ import annotations

import base64
import gc
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from amazon_kclpy.kcl import CheckpointError

from syncer.core.outcome import BatchOutcome
from syncer.errors import DownstreamUnavailableError
from syncer.pipeline import cyclic_gc_paused
from syncer.runner.kcl import (
    EXIT_FATAL,
    Position,
    SyncerRecordProcessor,
    handled_prefix,
)
from syncer.runner.kinesisrecords import from_get_records, lambda_kinesis_record
from tests.helpers import CollectorWatch

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"


@dataclass
class FakeRecord:
    """What amazon-kclpy hands a processor for one Kinesis record."""

    sequence_number: str
    data: str = base64.b64encode(b"{}").decode()
    partition_key: str = "pk"
    sub_sequence_number: int = 0
    timestamp_millis: int = 1_800_000_000_000


@dataclass
class FakeCheckpointer:
    """Records each checkpoint; answers with the queued errors first (None: accepted)."""

    answers: list[str | None] = field(default_factory=list)
    saved: list[str | None] = field(default_factory=list)
    refused: list[str | None] = field(default_factory=list)

    def checkpoint(
        self, sequence_number: str | None = None, sub_sequence_number: int | None = None
    ) -> None:
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            self.refused.append(sequence_number)
            raise CheckpointError(answer)
        self.saved.append(sequence_number)


@dataclass
class Input:
    """amazon-kclpy's ProcessRecordsInput / ShardEndedInput / ShutdownRequestedInput."""

    checkpointer: FakeCheckpointer
    records: list[FakeRecord] = field(default_factory=list)
    shard_id: str = "shardId-000000000001"
    sequence_number: str = "TRIM_HORIZON"
    sub_sequence_number: int = 0


def outcome(failed: Sequence[str] = (), records_in: int = 1) -> BatchOutcome:
    return BatchOutcome(records_in, 0, 0, 0, 0, 0, 0, tuple(failed))


def script(
    *answers: Sequence[str] | Exception,
) -> tuple[Callable[..., BatchOutcome], list[list[str]]]:
    """A ``process`` answering each call with the next failed numbers (or raising); its calls."""
    calls: list[list[str]] = []
    queue = list(answers)

    def process(records: list[dict[str, Any]]) -> BatchOutcome:
        calls.append([r["kinesis"]["sequenceNumber"] for r in records])
        answer = queue.pop(0) if queue else ()
        if isinstance(answer, Exception):
            raise answer
        return outcome(answer, len(records))

    return process, calls


def processor(process: Callable[..., BatchOutcome], stop: threading.Event | None = None) -> Any:
    waits: list[float] = []
    stop = stop or threading.Event()

    def backoff(failures: int) -> float:
        return 0.5 * failures

    made = SyncerRecordProcessor(process, ARN, backoff, stop)
    made.stop = _RecordingEvent(stop, waits)
    made.waits = waits
    made.initialize(Input(FakeCheckpointer()))
    return made


class _RecordingEvent:
    """The stop event, with the waits asked of it recorded and not slept."""

    def __init__(self, event: threading.Event, waits: list[float]) -> None:
        self.event, self.waits = event, waits

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.event.is_set()


def records(*numbers: str) -> list[FakeRecord]:
    return [FakeRecord(n) for n in numbers]


@pytest.mark.parametrize(
    ("numbers", "failed", "expected"),
    [
        (["1", "2", "3"], set(), 3),
        (["1", "2", "3"], {"1"}, 0),
        (["1", "2", "3"], {"2"}, 1),
        (["1", "2", "3"], {"3", "2"}, 1),
        ([], {"9"}, 0),
    ],
)
def test_handled_prefix_stops_at_the_first_failed_record(
    numbers: list[str], failed: set[str], expected: int
) -> None:
    """The records handled are exactly those before the first failed one."""
    assert handled_prefix(numbers, failed) == expected


def test_a_durable_batch_is_checkpointed_at_its_last_record() -> None:
    """Every record handled: one checkpoint, at the last record."""
    # given a processor whose batches all succeed
    process, calls = script(())
    made, checkpointer = processor(process), FakeCheckpointer()
    # when a batch arrives
    made.process_records(Input(checkpointer, records("10", "11", "12")))
    # then it ran once and was checkpointed at its last record
    assert calls == [["10", "11", "12"]]
    assert checkpointer.saved == ["12"]
    assert made.checkpointed == Position("12")


def test_the_collector_stays_off_until_each_batchs_outcome_is_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the Lambda handler does, the processor turns the collector on only after a batch is
    dropped, retries included, and never holds it off through the wait before a retry."""
    # given a processor whose batches' outcomes are followed (the first attempt fails a record)
    watch = CollectorWatch()
    monkeypatch.setattr(gc, "enable", watch.enable)
    answers = [("11",), ()]
    collector_on_while_waiting: list[bool] = []

    def process(batch: list[dict[str, Any]]) -> BatchOutcome:
        failed = answers.pop(0)
        with cyclic_gc_paused():  # as process_batch holds the collector off for the batch
            return watch.outcome(len(batch), 0, 0, 0, 0, 0, 0, failed)

    made, checkpointer = processor(process), FakeCheckpointer()
    waits = made.stop

    class Watching:
        def is_set(self) -> bool:
            return False

        def wait(self, seconds: float) -> bool:
            collector_on_while_waiting.append(gc.isenabled())
            return waits.wait(seconds)

    made.stop = Watching()
    assert gc.isenabled()
    # when a batch arrives, fails one record, and is retried from it
    made.process_records(Input(checkpointer, records("10", "11", "12")))
    # then the collector came on after each attempt, once its outcome was freed
    assert checkpointer.saved == ["10", "12"]
    assert watch.enabled_with_outcomes_alive == [False, False]
    assert collector_on_while_waiting == [True]
    assert gc.isenabled()


def test_records_reach_process_batch_in_lambdas_kinesis_shape() -> None:
    """process_batch gets what lambda_handler would: data, sequence, key, arrival, ARN, eventID."""
    seen: list[dict[str, Any]] = []

    def process(batch: list[dict[str, Any]]) -> BatchOutcome:
        seen.extend(batch)
        return outcome()

    made = processor(process)
    made.process_records(Input(FakeCheckpointer(), [FakeRecord("7", "eyJhIjoxfQ==", "key-1")]))
    assert seen == [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "key-1",
                "sequenceNumber": "7",
                "data": "eyJhIjoxfQ==",
                "approximateArrivalTimestamp": 1_800_000_000.0,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000001:7",
            "eventName": "aws:kinesis:record",
            "awsRegion": "eu-west-1",
            "eventSourceARN": ARN,
        }
    ]


def test_a_failed_record_is_retried_from_itself_and_never_checkpointed_past() -> None:
    """Record 12 fails twice: checkpoint at 11, retries from 12 with backoff, then at 13."""
    # given a batch whose third record fails twice, then succeeds
    process, calls = script(["12"], ["12"], ())
    made, checkpointer = processor(process), FakeCheckpointer()
    # when the batch arrives
    made.process_records(Input(checkpointer, records("10", "11", "12", "13")))
    # then the handled prefix is saved first, and the retries start at the failed record
    assert calls == [["10", "11", "12", "13"], ["12", "13"], ["12", "13"]]
    assert checkpointer.saved == ["11", "13"]
    # with [resilience]'s backoff after each failure in a row
    assert made.waits == [0.5, 1.0]


def test_a_batch_that_fails_whole_is_retried_and_nothing_is_checkpointed_meanwhile() -> None:
    """process_batch raising DownstreamUnavailableError: the whole batch again, no checkpoint."""
    process, calls = script(DownstreamUnavailableError("dead letters down"), ())
    made, checkpointer = processor(process), FakeCheckpointer()
    made.process_records(Input(checkpointer, records("1", "2")))
    assert calls == [["1", "2"], ["1", "2"]]
    assert checkpointer.saved == ["2"]


def test_a_shutdown_request_ends_the_retries_without_passing_the_failed_record() -> None:
    """SIGTERM while a record keeps failing: return, checkpoint only before it, and remember."""
    # given a record that always fails, and a stop requested during the backoff
    stop = threading.Event()
    process, calls = script(["3"], ["3"], ["3"])
    made, checkpointer = processor(process, stop), FakeCheckpointer()
    stop.set()
    # when the batch arrives
    made.process_records(Input(checkpointer, records("1", "2", "3", "4")))
    # then it stops after the first attempt, checkpointed at 2, and gives up on 3
    assert calls == [["1", "2", "3", "4"]]
    assert checkpointer.saved == ["2"]
    assert made.gave_up is not None
    # and shutdown_requested saves nothing beyond 2, nor does the shard's end
    ending = FakeCheckpointer()
    made.shutdown_requested(Input(ending))
    made.shard_ended(Input(ending))
    assert ending.saved == []


def test_records_delivered_after_giving_up_end_the_process() -> None:
    """KCL delivering more after a record was given up on: exit, checkpoint nothing."""
    stop = threading.Event()
    stop.set()
    process, _ = script(["1"])
    made, checkpointer = processor(process, stop), FakeCheckpointer()
    made.process_records(Input(checkpointer, records("1")))
    with pytest.raises(SystemExit) as exited:
        made.process_records(Input(checkpointer, records("2")))
    assert exited.value.code == EXIT_FATAL
    assert checkpointer.saved == []


def test_a_lost_lease_stops_the_batch_and_no_checkpoint_follows() -> None:
    """ShutdownException on a checkpoint: stop at once; lease_lost checkpoints nothing."""
    # given a batch whose second record fails, and a lease lost by the first checkpoint
    process, calls = script(["2"], ())
    made = processor(process)
    checkpointer = FakeCheckpointer(answers=["ShutdownException"])
    # when the batch arrives
    made.process_records(Input(checkpointer, records("1", "2", "3")))
    # then it is not retried (the new owner starts after the old checkpoint)
    assert calls == [["1", "2", "3"]]
    assert checkpointer.saved == []
    assert made.checkpointed == Position("TRIM_HORIZON")
    # and lease_lost has nothing to checkpoint with, nor tries
    made.lease_lost(Input(checkpointer))
    assert checkpointer.saved == []


@pytest.mark.parametrize("answer", ["ThrottlingException", "KinesisClientLibDependencyException"])
def test_a_throttled_checkpoint_is_left_to_the_next_one(answer: str) -> None:
    """A checkpoint to try later: processing goes on, and shutdown_requested saves it."""
    process, _ = script((), ())
    made = processor(process)
    checkpointer = FakeCheckpointer(answers=[answer])
    made.process_records(Input(checkpointer, records("1", "2")))
    assert checkpointer.refused == ["2"]
    assert made.checkpointed == Position("TRIM_HORIZON")
    # when shutdown is requested, the handled position is saved then
    made.shutdown_requested(Input(checkpointer))
    assert checkpointer.saved == ["2"]


@pytest.mark.parametrize("answer", ["InvalidStateException", "IllegalArgumentException"])
def test_any_other_checkpoint_refusal_ends_the_process(answer: str) -> None:
    """InvalidStateException and the like: exit (amazon-kclpy would swallow an exception)."""
    process, _ = script(())
    made = processor(process)
    with pytest.raises(SystemExit) as exited:
        made.process_records(Input(FakeCheckpointer(answers=[answer]), records("1")))
    assert exited.value.code == EXIT_FATAL


def test_a_bug_in_the_pipeline_ends_the_process_instead_of_skipping_the_batch() -> None:
    """An unexpected exception: exit, no checkpoint; the shard restarts from its checkpoint."""
    process, _ = script(KeyError("bug"))
    made, checkpointer = processor(process), FakeCheckpointer()
    with pytest.raises(SystemExit) as exited:
        made.process_records(Input(checkpointer, records("1")))
    assert exited.value.code == EXIT_FATAL
    assert checkpointer.saved == []


def test_the_shards_end_is_checkpointed_with_no_argument() -> None:
    """shard_ended: checkpoint() with no sequence number, as KCL requires."""
    process, _ = script(())
    made, checkpointer = processor(process), FakeCheckpointer()
    made.process_records(Input(checkpointer, records("1")))
    made.shard_ended(Input(checkpointer))
    assert checkpointer.saved == ["1", None]


def test_shutdown_requested_with_everything_saved_checkpoints_nothing_more() -> None:
    """Nothing handled since the last checkpoint: no second checkpoint at the same place."""
    process, _ = script(())
    made, checkpointer = processor(process), FakeCheckpointer()
    made.process_records(Input(checkpointer, records("5")))
    made.shutdown_requested(Input(checkpointer))
    assert checkpointer.saved == ["5"]


def test_get_records_output_takes_the_same_shape() -> None:
    """A boto3 GetRecords record becomes the same Lambda record as amazon-kclpy's would."""
    import datetime as dt

    arrival = dt.datetime.fromtimestamp(1_800_000_000, tz=dt.UTC)
    raw = {
        "Data": b"{}",
        "SequenceNumber": "7",
        "PartitionKey": "k",
        "ApproximateArrivalTimestamp": arrival,
    }
    assert from_get_records(raw, ARN, "shardId-1") == lambda_kinesis_record(
        data_base64=base64.b64encode(b"{}").decode(),
        sequence_number="7",
        partition_key="k",
        arrival_s=1_800_000_000.0,
        stream_arn=ARN,
        shard_id="shardId-1",
    )
    assert json.loads(base64.b64decode(from_get_records(raw, ARN, "s")["kinesis"]["data"])) == {}


def test_a_non_kinesis_arn_is_refused() -> None:
    """The stream ARN names the records' source: anything else is a clear error."""
    with pytest.raises(ValueError, match="not a Kinesis stream ARN"):
        lambda_kinesis_record(
            data_base64="",
            sequence_number="1",
            partition_key="k",
            arrival_s=0.0,
            stream_arn="arn:aws:dynamodb:us-east-1:1:table/t",
            shard_id="s",
        )
