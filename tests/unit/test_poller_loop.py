"""The poll loop over an in-memory stream with closed parents, children and paged DescribeStream.

The emulator has one never-closing shard, so lineage, batching and retry positions are checked
here against a small stand-in for the DynamoDB Streams API; ``process_batch`` is a recorder.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from syncer.config import Config, ResilienceConfig, parse_config
from syncer.core.outcome import BatchOutcome
from syncer.pipeline import cyclic_gc_paused
from syncer.runner import poller
from syncer.runner.poller import PollOptions, StreamPoller
from syncer.runner.reader import backoff_s
from syncer.sinks.checkpoints import ShardCheckpoint
from syncer.sinks.resilience import Downstream
from tests.helpers import CollectorWatch

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"


class MemoryStreams:
    """DescribeStream (one shard per page), GetShardIterator and GetRecords over fixed shards."""

    def __init__(self, shards: dict[str, tuple[str | None, list[str], bool]], page: int) -> None:
        self.meta = SimpleNamespace(region_name="us-east-1")
        self.shards = shards  # id -> (parent id, sequence numbers, closed)
        self.page = page  # records per GetRecords at most, like a busy shard

    def describe_stream(self, StreamArn: str, ExclusiveStartShardId: str | None = None) -> Any:
        ids = list(self.shards)
        start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId else 0
        shards = []
        for shard_id in ids[start : start + 1]:
            parent = self.shards[shard_id][0]
            shards.append({"ShardId": shard_id, **({"ParentShardId": parent} if parent else {})})
        description: dict[str, Any] = {"StreamArn": StreamArn, "Shards": shards}
        if start + 1 < len(ids):
            description["LastEvaluatedShardId"] = ids[start]
        return {"StreamDescription": description}

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str = "0"
    ) -> Any:
        numbers = [int(n) for n in self.shards[ShardId][1]]
        wanted = {
            "TRIM_HORIZON": lambda n: True,
            "AT_SEQUENCE_NUMBER": lambda n: n >= int(SequenceNumber),
            "AFTER_SEQUENCE_NUMBER": lambda n: n > int(SequenceNumber),
        }[ShardIteratorType]
        position = next((i for i, n in enumerate(numbers) if wanted(n)), len(numbers))
        return {"ShardIterator": f"{ShardId}@{position}"}

    def get_records(self, ShardIterator: str, Limit: int) -> Any:
        shard_id, _, start = ShardIterator.rpartition("@")
        _, numbers, closed = self.shards[shard_id]
        taken = numbers[int(start) : int(start) + min(Limit, self.page)]
        end = int(start) + len(taken)
        records = [
            {"eventID": n, "eventName": "INSERT", "dynamodb": {"SequenceNumber": n}} for n in taken
        ]
        following = None if closed and end >= len(numbers) else f"{shard_id}@{end}"
        return {"Records": records, "NextShardIterator": following}


class MemoryTable:
    def describe_table(self, TableName: str) -> Any:
        return {"Table": {"TableArn": ARN.split("/stream")[0], "LatestStreamArn": ARN}}


class MemoryStore:
    def __init__(self, loaded: dict[str, ShardCheckpoint] | None = None) -> None:
        self.saved: list[tuple[str, ShardCheckpoint]] = []
        self.loaded = dict(loaded or {})
        self.forgotten: list[str] = []

    def load(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        return dict(self.loaded)

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        self.saved.append((shard_id, checkpoint))

    def forget_others(self, stream_arn: str, keep: Any) -> list[str]:
        gone = sorted(set(self.loaded) - set(keep))
        self.forgotten.extend(gone)
        self.loaded = {k: v for k, v in self.loaded.items() if k in keep}
        return gone

    def describe(self) -> str:
        return "memory"


class Recorder:
    """Stands in for process_batch: records each batch; fails as told, batch by batch."""

    def __init__(
        self,
        failures: Sequence[Sequence[str] | Exception] = (),
        watch: CollectorWatch | None = None,
    ) -> None:
        self.batches: list[list[str]] = []
        self.failures = list(failures)
        self.watch = watch

    def __call__(self, records: Sequence[Any], config: Config, sinks: Any) -> BatchOutcome:
        numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
        assert all(r["eventSourceARN"] == ARN for r in records)
        self.batches.append(numbers)
        failed = self.failures.pop(0) if self.failures else ()
        if isinstance(failed, Exception):
            raise failed
        fields = (len(records), len(records), len(records), 0, 0, 0, 0, tuple(failed))
        if self.watch is None:
            return BatchOutcome(*fields)
        with cyclic_gc_paused():  # as process_batch holds the collector off for the batch
            return self.watch.outcome(*fields)


CONFIG = parse_config(
    {
        "deadletter": {"file": "deadletter.jsonl"},
        "resilience": {"initial_backoff_s": 0.001, "max_backoff_s": 0.002},
        "tables": [{"name": "catalog", "index": "catalog"}],
    },
    environ={},
)


def _run(
    shards: dict[str, tuple[str | None, list[str], bool]],
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    page: int = 1000,
    store: MemoryStore | None = None,
    **options: Any,
) -> tuple[MemoryStore, poller.RunSummary]:
    monkeypatch.setattr(poller, "process_batch", recorder)
    store = store or MemoryStore()
    loop = StreamPoller(
        CONFIG,
        sinks=None,  # type: ignore[arg-type]
        streams=MemoryStreams(shards, page),
        dynamodb=MemoryTable(),
        store=store,
        options=PollOptions(once=True, idle_sleep_s=0, **options),
    )
    return store, loop.run()


def test_the_collector_stays_off_until_each_batchs_outcome_is_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the Lambda handler does, the loop turns the collector on only after a batch is dropped."""
    # given a loop whose batches' outcomes are followed, and the collector on
    watch = CollectorWatch()
    monkeypatch.setattr(gc, "enable", watch.enable)
    assert gc.isenabled()
    # when it handles two batches
    recorder = Recorder(watch=watch)
    _run({"s": (None, ["1", "2", "3"], False)}, recorder, monkeypatch, page=2)
    # then the collector was turned on once after each, when its outcome was already freed
    assert recorder.batches == [["1", "2"], ["3"]]
    assert watch.enabled_with_outcomes_alive == [False, False]
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off_through_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop's pause never turns on a collector that someone else turned off."""
    # given the collector off
    gc.disable()
    try:
        # when the loop handles a batch
        recorder = Recorder()
        _run({"s": (None, ["1"], False)}, recorder, monkeypatch)
        # then it is still off
        assert recorder.batches == [["1"]]
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_closed_parent_is_read_to_its_end_before_its_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child listed first still waits; the parent is checkpointed as finished, then the child."""
    shards = {"child": ("parent", ["40", "50"], False), "parent": (None, ["10", "20", "30"], True)}
    recorder = Recorder()
    store, summary = _run(shards, recorder, monkeypatch, batch_size=2)
    assert recorder.batches == [["10", "20"], ["30"], ["40", "50"]]
    assert ("parent", ShardCheckpoint("30", finished=True)) in store.saved
    assert store.saved[-1] == ("child", ShardCheckpoint("50"))
    assert summary.caught_up


def test_a_partial_failure_checkpoints_before_it_and_retries_from_the_lowest_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records before the lowest failed one are checkpointed; reading resumes AT that record."""
    recorder = Recorder(failures=[["30", "20"]])
    store, summary = _run({"s": (None, ["10", "20", "30", "40"], False)}, recorder, monkeypatch)
    assert recorder.batches == [["10", "20", "30", "40"], ["20", "30", "40"]]
    assert store.saved == [("s", ShardCheckpoint("10")), ("s", ShardCheckpoint("40"))]
    assert summary.failures_retried == 1


def test_an_exception_from_process_batch_retries_the_whole_batch_without_a_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A raised error never moves the checkpoint; the same records are delivered again."""
    recorder = Recorder(failures=[RuntimeError("boom")])
    store, summary = _run({"s": (None, ["10", "20"], False)}, recorder, monkeypatch)
    assert recorder.batches == [["10", "20"], ["10", "20"]]
    assert store.saved == [("s", ShardCheckpoint("20"))]
    assert summary.failures_retried == 1


def test_without_a_batching_window_each_read_is_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Window 0 sends what one GetRecords returned, however small."""
    recorder = Recorder()
    _run({"s": (None, ["1", "2", "3", "4", "5"], False)}, recorder, monkeypatch, page=2)
    assert recorder.batches == [["1", "2"], ["3", "4"], ["5"]]


def test_a_batching_window_gathers_reads_up_to_the_batch_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a window, several reads fill one batch of batch_size; the rest follows when caught up."""
    recorder = Recorder()
    numbers = [str(n) for n in range(1, 8)]
    _run(
        {"s": (None, numbers, False)},
        recorder,
        monkeypatch,
        page=2,
        batch_size=5,
        batching_window_s=60,
    )
    assert recorder.batches == [numbers[:5], numbers[5:]]


def test_checkpoints_of_shards_that_left_the_stream_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trimmed shard's checkpoint can never be used again; the store does not keep it."""
    store = MemoryStore(
        {"trimmed": ShardCheckpoint("5", finished=True), "s": ShardCheckpoint("10")}
    )
    recorder = Recorder()
    _run({"s": (None, ["10", "20"], False)}, recorder, monkeypatch, store=store)
    assert store.forgotten == ["trimmed"]
    assert recorder.batches == [["20"]]  # the kept checkpoint still applies


@pytest.mark.parametrize(("failures", "low", "high"), [(1, 0.1, 0.2), (3, 0.4, 0.5), (9, 2.0, 2.0)])
def test_a_shards_backoff_is_the_resilience_policys_wait(
    failures: int, low: float, high: float
) -> None:
    """The wait after n failures is resilience's: initial x 2^(n-1) plus jitter, capped at max."""
    settings = ResilienceConfig(initial_backoff_s=0.1, max_backoff_s=2.0)
    delays = [backoff_s(Downstream("test", settings), failures) for _ in range(20)]
    assert all(low <= delay <= high for delay in delays)
