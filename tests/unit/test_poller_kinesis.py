"""The poll loop over an in-memory Kinesis stream: merges, closed shards, failures, replays.

The emulator cannot close a shard the way AWS does (it always answers a next iterator) nor
throttle, so lineage, the end of a shard, throughput errors and the window's end are checked
here against a small stand-in for the Kinesis API; ``process_batch`` is a recorder.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from syncer.config import Config, parse_config
from syncer.core.outcome import BatchOutcome
from syncer.runner import poller
from syncer.runner.poller import PollOptions, StreamPoller
from syncer.runner.window import ReplayWindow
from syncer.sinks.checkpoints import ShardCheckpoint

NAME = "changes"
ARN = f"arn:aws:kinesis:us-east-1:123456789012:stream/{NAME}"
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class MemoryShard:
    records: list[tuple[str, float]]  # (sequence number, seconds after T0 it arrived)
    parents: tuple[str | None, str | None] = (None, None)
    closed: bool = False


class StuckError(BaseException):
    """Ends a poll loop that would read a stuck iterator forever (no ``except Exception`` in the
    loop catches it), so such a test fails instead of hanging."""


@dataclass
class MemoryKinesis:
    """DescribeStreamSummary, ListShards (one shard a page), GetShardIterator, GetRecords."""

    shards: dict[str, MemoryShard]
    page: int = 1000
    null_iterator_at_end: bool = True  # AWS; the emulator always answers one
    failures: list[str] = field(default_factory=list)  # error codes GetRecords raises first
    idle_pages: int = 0  # empty answers behind the newest record first (an idle stretch)
    meta: Any = field(default_factory=lambda: SimpleNamespace(region_name="us-east-1"))
    iterator_requests: list[dict[str, Any]] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)  # each GetRecords' Limit
    trimmed: int = 0  # records before this index are past the retention, gone
    stuck_reads: int = 0

    RETENTION_MS = 24 * 3_600_000

    def describe_stream_summary(self, StreamName: str) -> Any:
        return {"StreamDescriptionSummary": {"StreamARN": ARN, "RetentionPeriodHours": 24}}

    def list_shards(self, StreamName: str | None = None, NextToken: str | None = None) -> Any:
        ids = list(self.shards)
        start = ids.index(NextToken) + 1 if NextToken else 0
        listed = []
        for shard_id in ids[start : start + 1]:
            shard = self.shards[shard_id]
            entry: dict[str, Any] = {"ShardId": shard_id, "SequenceNumberRange": {}}
            parent, adjacent = shard.parents
            if parent:
                entry["ParentShardId"] = parent
            if adjacent:
                entry["AdjacentParentShardId"] = adjacent
            if shard.closed:
                entry["SequenceNumberRange"]["EndingSequenceNumber"] = "9" * 20
            listed.append(entry)
        page: dict[str, Any] = {"Shards": listed}
        if start + 1 < len(ids):
            page["NextToken"] = ids[start]
        return page

    def get_shard_iterator(self, **request: Any) -> Any:
        self.iterator_requests.append(request)
        shard = self.shards[request["ShardId"]]
        kind = request["ShardIteratorType"]
        numbers = [int(n) for n, _ in shard.records]
        arrivals = [T0.timestamp() + offset for _, offset in shard.records]
        wanted = {
            "TRIM_HORIZON": lambda i: True,
            "AT_SEQUENCE_NUMBER": lambda i: numbers[i] >= int(request["StartingSequenceNumber"]),
            "AFTER_SEQUENCE_NUMBER": lambda i: numbers[i] > int(request["StartingSequenceNumber"]),
            "AT_TIMESTAMP": lambda i: arrivals[i] >= request["Timestamp"].timestamp(),
        }[kind]
        position = next((i for i in range(len(numbers)) if wanted(i)), len(numbers))
        if kind == "AFTER_SEQUENCE_NUMBER" and position <= self.trimmed and position > 0:
            # AWS answers an iterator that reads nothing, at the retention's edge, for good
            return {"ShardIterator": f"{request['ShardId']}@stuck"}
        return {"ShardIterator": f"{request['ShardId']}@{max(position, self.trimmed)}"}

    def get_records(self, ShardIterator: str, Limit: int) -> Any:
        self.limits.append(Limit)
        if self.failures:
            code = self.failures.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": "test"}}, "GetRecords")
        shard_id, _, start = ShardIterator.rpartition("@")
        if start == "stuck":
            self.stuck_reads += 1
            if self.stuck_reads > 50:
                raise StuckError("still reading nothing at the retention's edge after 50 reads")
            return {
                "Records": [],
                "NextShardIterator": ShardIterator,
                "MillisBehindLatest": self.RETENTION_MS,
            }
        if self.idle_pages:
            self.idle_pages -= 1
            return {"Records": [], "NextShardIterator": ShardIterator, "MillisBehindLatest": 5000}
        shard = self.shards[shard_id]
        taken = shard.records[int(start) : int(start) + min(Limit, self.page)]
        end = int(start) + len(taken)
        records = [
            {
                "SequenceNumber": number,
                "ApproximateArrivalTimestamp": T0 + dt.timedelta(seconds=offset),
                "Data": json.dumps({"n": number}).encode(),
                "PartitionKey": "k",
            }
            for number, offset in taken
        ]
        at_end = end >= len(shard.records)
        following: str | None = f"{shard_id}@{end}"
        if shard.closed and at_end and self.null_iterator_at_end:
            following = None
        behind = 0 if at_end else 1000
        return {"Records": records, "NextShardIterator": following, "MillisBehindLatest": behind}


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, ShardCheckpoint]] = {}
        self.saved: list[tuple[str, str, ShardCheckpoint]] = []

    def load(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        return dict(self.data.get(stream_arn, {}))

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        self.saved.append((stream_arn, shard_id, checkpoint))
        self.data.setdefault(stream_arn, {})[shard_id] = checkpoint

    def forget_others(self, stream_arn: str, keep: Any) -> list[str]:
        shards = self.data.get(stream_arn, {})
        gone = sorted(set(shards) - set(keep))
        self.data[stream_arn] = {k: v for k, v in shards.items() if k in keep}
        if not self.data[stream_arn]:
            del self.data[stream_arn]
        return gone

    def describe(self) -> str:
        return "memory"


class Recorder:
    """Stands in for process_batch: keeps (shard, sequence numbers); fails as told."""

    def __init__(self, failures: Sequence[Sequence[str]] = ()) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.failures = list(failures)

    def __call__(self, records: Sequence[Any], config: Config, sinks: Any) -> BatchOutcome:
        for record in records:  # shaped as Lambda's Kinesis records
            assert record["eventSource"] == "aws:kinesis"
            assert record["eventSourceARN"] == ARN
            data = json.loads(base64.b64decode(record["kinesis"]["data"]))
            assert data == {"n": record["kinesis"]["sequenceNumber"]}
        numbers = [r["kinesis"]["sequenceNumber"] for r in records]
        self.batches.append((records[0]["eventID"].split(":")[0], numbers))
        failed = tuple(self.failures.pop(0)) if self.failures else ()
        return BatchOutcome(len(records), len(records), len(records), 0, 0, 0, 0, failed)

    @property
    def shards(self) -> list[str]:
        return [shard for shard, numbers in self.batches for _ in numbers]


CONFIG = parse_config(
    {
        "deadletter": {"file": "deadletter.jsonl"},
        "resilience": {"max_attempts": 2, "initial_backoff_s": 0.001, "max_backoff_s": 0.002},
        "tables": [{"name": "catalog", "index": "catalog", "kinesis_stream": NAME}],
    },
    environ={},
)


def _run(
    kinesis: MemoryKinesis,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    store: MemoryStore | None = None,
    replay: ReplayWindow | None = None,
    once: bool | None = None,
    **options: Any,
) -> tuple[MemoryStore, poller.RunSummary]:
    monkeypatch.setattr(poller, "process_batch", recorder)
    store = store or MemoryStore()
    loop = StreamPoller(
        CONFIG,
        sinks=None,  # type: ignore[arg-type]
        streams=SimpleNamespace(meta=SimpleNamespace(region_name="us-east-1")),
        dynamodb=None,
        store=store,
        options=PollOptions(
            once=replay is None if once is None else once, idle_sleep_s=0, **options
        ),
        kinesis=kinesis,
        replay=replay,
    )
    return store, loop.run()


def _records(*numbers: int, at: float = 0.0) -> list[tuple[str, float]]:
    return [(str(n), at + i) for i, n in enumerate(numbers)]


def test_a_merged_child_waits_for_both_of_its_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child of a MergeShards is read only after its parent and its adjacent parent."""
    kinesis = MemoryKinesis(
        {
            "child": MemoryShard(_records(50, 60), parents=("left", "right")),
            "left": MemoryShard(_records(10, 20), closed=True),
            "right": MemoryShard(_records(30, 40, 45, 46, 47), closed=True),
        },
        page=1,
    )
    recorder = Recorder()
    store, summary = _run(kinesis, recorder, monkeypatch)
    order = recorder.shards
    assert order.index("child") > max(i for i, s in enumerate(order) if s != "child")
    assert sorted(order) == ["child"] * 2 + ["left"] * 2 + ["right"] * 5
    assert store.data[ARN]["left"] == ShardCheckpoint("20", finished=True)
    assert store.data[ARN]["right"] == ShardCheckpoint("47", finished=True)
    assert store.data[ARN]["child"] == ShardCheckpoint("60")
    assert summary.caught_up


def test_a_closed_shard_ends_without_a_null_iterator(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on the emulator: a closed shard read to its newest record is finished all the same."""
    kinesis = MemoryKinesis(
        {
            "parent": MemoryShard(_records(1, 2), closed=True),
            "child": MemoryShard(_records(3), parents=("parent", None)),
        },
        null_iterator_at_end=False,
    )
    recorder = Recorder()
    store, _ = _run(kinesis, recorder, monkeypatch)
    assert recorder.batches == [("parent", ["1", "2"]), ("child", ["3"])]
    assert store.data[ARN]["parent"].finished


def test_a_partial_failure_checkpoints_before_the_lowest_kinesis_sequence_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reported kinesis.sequenceNumbers: checkpoint before the lowest, read again from it."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(10, 20, 30, 40))})
    recorder = Recorder(failures=[["40", "20"]])
    store, summary = _run(kinesis, recorder, monkeypatch)
    assert recorder.batches == [("s", ["10", "20", "30", "40"]), ("s", ["20", "30", "40"])]
    assert [(s, c) for _, s, c in store.saved] == [
        ("s", ShardCheckpoint("10")),
        ("s", ShardCheckpoint("40")),
    ]
    assert kinesis.iterator_requests[1]["ShardIteratorType"] == "AT_SEQUENCE_NUMBER"
    assert kinesis.iterator_requests[1]["StartingSequenceNumber"] == "20"
    assert summary.failures_retried == 1


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "LimitExceededException"]
)
def test_throttled_reads_back_off_and_lose_nothing(
    monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """More throttling than the guard's retries: the shard backs off, then reads everything."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(1, 2, 3))}, failures=[code] * 5)
    recorder = Recorder()
    _, summary = _run(kinesis, recorder, monkeypatch)
    assert recorder.batches == [("s", ["1", "2", "3"])]
    assert summary.caught_up


def test_an_expired_iterator_is_replaced_after_the_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ExpiredIteratorException: a new iterator AFTER_SEQUENCE_NUMBER the checkpoint."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(1, 2, 3))}, page=2)
    recorder = Recorder()
    store = MemoryStore()
    store.data[ARN] = {"s": ShardCheckpoint("1")}
    kinesis.failures = ["ExpiredIteratorException"]
    _, summary = _run(kinesis, recorder, monkeypatch, store=store)
    assert recorder.batches == [("s", ["2", "3"])]
    assert summary.expired_iterators == 1
    assert [r["ShardIteratorType"] for r in kinesis.iterator_requests] == [
        "AFTER_SEQUENCE_NUMBER",
        "AFTER_SEQUENCE_NUMBER",
    ]


def _window(start_offset_s: float, until_offset_s: float, margin_s: float) -> ReplayWindow:
    return ReplayWindow(
        T0 + dt.timedelta(seconds=start_offset_s),
        T0 + dt.timedelta(seconds=until_offset_s),
        margin_s,
    )


def test_a_replay_reads_its_window_with_checkpoints_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AT_TIMESTAMP from less 1 s, cut after until plus the margin; its checkpoints then dropped."""
    # records arriving at T0+0, +1, ... +9 s
    kinesis = MemoryKinesis({"s": MemoryShard(_records(*range(100, 110))), "t": MemoryShard([])})
    recorder = Recorder()
    store = MemoryStore()
    store.data[ARN] = {"s": ShardCheckpoint("109")}  # the follower's, far ahead
    window = _window(4.5, 6.0, margin_s=1.0)
    _, summary = _run(kinesis, recorder, monkeypatch, store=store, replay=window)
    # from 3.5 s (the clock margin) to 7 s (until + margin): records at 4, 5, 6 and 7 s
    assert recorder.batches == [("s", ["104", "105", "106", "107"])]
    request = kinesis.iterator_requests[0]
    assert request["ShardIteratorType"] == "AT_TIMESTAMP"
    assert request["Timestamp"] == T0 + dt.timedelta(seconds=3.5)
    assert summary.caught_up
    key = window.checkpoint_key(ARN)
    assert (key, "s", ShardCheckpoint("107", finished=True)) in store.saved
    assert key not in store.data  # dropped once the replay ended
    assert store.data[ARN] == {"s": ShardCheckpoint("109")}  # the follower's untouched


def test_a_replay_stopped_early_resumes_from_its_checkpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second run of the same window starts after what the first handled."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(*range(100, 110)))}, page=2)
    window = _window(0.0, 20.0, margin_s=0.0)
    store = MemoryStore()
    first = Recorder()
    _, stopped = _run(kinesis, first, monkeypatch, store=store, replay=window, max_passes=2)
    assert not stopped.caught_up
    saved = store.data[window.checkpoint_key(ARN)]["s"]
    assert saved.sequence_number is not None
    assert [n for _, numbers in first.batches for n in numbers][-1] == saved.sequence_number
    second = Recorder()
    _, resumed = _run(kinesis, second, monkeypatch, store=store, replay=window)
    assert [n for _, numbers in second.batches for n in numbers] == [
        str(n) for n in range(int(saved.sequence_number) + 1, 110)
    ]
    assert resumed.caught_up


def test_an_empty_read_behind_the_newest_record_is_not_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kinesis may answer nothing across an idle stretch (MillisBehindLatest above 0): --once
    reads on instead of stopping there as caught up."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(1, 2))}, idle_pages=3)
    recorder = Recorder()
    _, summary = _run(kinesis, recorder, monkeypatch)
    assert recorder.batches == [("s", ["1", "2"])]
    assert summary.caught_up


def test_a_checkpoint_past_the_retention_is_a_counted_gap_not_a_stuck_shard(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Kinesis has no TrimmedDataAccessException: after a checkpoint whose record was trimmed it
    answers nothing, at MillisBehindLatest equal to the retention, for good. syncer takes that
    first empty read for the trim: one GAP warning naming the checkpoint, a counted gap, and
    reading goes on from TRIM_HORIZON (the old code read the stuck iterator forever)."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(1, 2, 3, 4, 5))}, trimmed=3)
    store = MemoryStore()
    store.save(ARN, "s", ShardCheckpoint("2"))
    recorder = Recorder()
    caplog.set_level("WARNING")
    store, summary = _run(kinesis, recorder, monkeypatch, store=store)
    assert recorder.batches == [("s", ["4", "5"])]
    assert summary.gaps == 1
    assert summary.caught_up
    assert store.data[ARN]["s"].sequence_number == "5"
    gap_lines = [r.getMessage() for r in caplog.records if "GAP" in r.getMessage()]
    assert len(gap_lines) == 1
    assert "checkpoint 2" in gap_lines[0]
    assert any("was trimmed" in r.getMessage() for r in caplog.records)


def test_an_empty_read_after_a_checkpoint_within_the_retention_is_no_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An idle stretch after a checkpoint (nothing new, MillisBehindLatest under the
    retention) is not a trim: no gap, and the checkpoint stays."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(1, 2))}, idle_pages=2)
    store = MemoryStore()
    store.save(ARN, "s", ShardCheckpoint("2"))
    recorder = Recorder()
    store, summary = _run(kinesis, recorder, monkeypatch, store=store)
    assert recorder.batches == []
    assert summary.gaps == 0
    assert kinesis.iterator_requests[0]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert store.data[ARN]["s"].sequence_number == "2"


def test_a_replay_stopped_by_once_before_its_end_keeps_its_checkpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--once ends a replay whose --until is still to come when it is caught up; run again, it
    goes on from its checkpoints instead of starting over."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(1, 2))})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    window = ReplayWindow(T0 - dt.timedelta(hours=1), later, 0.0)
    store, summary = _run(kinesis, Recorder(), monkeypatch, replay=window, once=True)
    assert summary.caught_up
    assert store.data[window.checkpoint_key(ARN)] == {"s": ShardCheckpoint("2")}


@pytest.mark.parametrize(
    ("name_or_arn", "message"),
    [
        ("arn:aws:kinesis:eu-west-1:123456789012:stream/changes", "is in region eu-west-1"),
        ("arn:aws:kinesis:us-east-1:999999999999:stream/changes", "is not in the account"),
        ("arn:aws:sqs:us-east-1:123456789012:changes", "is not a Kinesis stream ARN"),
    ],
)
def test_a_stream_arn_syncer_would_misread_is_refused(name_or_arn: str, message: str) -> None:
    """Reads name the stream: an ARN of another region or account is refused, not misread."""
    from syncer.errors import ConfigError
    from syncer.runner.kinesisreader import KinesisReader

    reader = KinesisReader(MemoryKinesis({}), CONFIG.resilience)
    with pytest.raises(ConfigError, match=message):
        reader.open(name_or_arn)
    assert reader.open(ARN).arn == ARN
    assert reader.open(NAME).name == NAME


def test_one_read_fills_several_batches_each_checkpointed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kinesis allows 5 reads a second per shard: a read takes up to 10,000 records and hands
    them over batch_size at a time, each batch checkpointed; a closed shard ends after the last."""
    numbers = list(range(1000, 1250))
    kinesis = MemoryKinesis({"s": MemoryShard(_records(*numbers), closed=True)})
    recorder = Recorder()
    store, _ = _run(kinesis, recorder, monkeypatch, batch_size=100)
    assert [len(batch) for _, batch in recorder.batches] == [100, 100, 50]
    assert kinesis.limits == [10_000]
    assert [checkpoint for _, _, checkpoint in store.saved] == [
        ShardCheckpoint("1099"),
        ShardCheckpoint("1199"),
        ShardCheckpoint("1249"),
        ShardCheckpoint("1249", finished=True),
    ]


def test_a_failure_in_a_batch_read_ahead_reads_again_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed record in the second batch of a read: the first stays checkpointed, the rest
    of the read is dropped and read again from the failed record."""
    kinesis = MemoryKinesis({"s": MemoryShard(_records(*range(1, 8)))})
    recorder = Recorder(failures=[[], ["5"]])
    store, _ = _run(kinesis, recorder, monkeypatch, batch_size=3)
    assert [numbers for _, numbers in recorder.batches] == [
        ["1", "2", "3"],
        ["4", "5", "6"],
        ["5", "6", "7"],
    ]
    assert [checkpoint for _, _, checkpoint in store.saved] == [
        ShardCheckpoint("3"),
        ShardCheckpoint("4"),
        ShardCheckpoint("7"),
    ]
