"""``syncer run`` on a Kinesis stream of a table, and ``--from/--until`` replays (issue 25).

On the real services: the emulator's table, its DynamoDB stream republished to the emulator's
Kinesis by tests/kinesis_bridge.py (shuffled and duplicated, as AWS may deliver), OpenSearch
and Redis. The poller reads Kinesis with ListShards, GetShardIterator and GetRecords and hands
``process_batch`` the records Lambda would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncer import pipeline
from syncer.cli import main
from syncer.config import load_config
from syncer.core.documents import SYNCER_FIELD
from syncer.core.outcome import BatchOutcome
from syncer.demo import demo_table
from syncer.errors import ConfigError
from syncer.runner import poller
from syncer.runner.poller import PollOptions
from syncer.runner.run import run_poller
from syncer.runner.window import ReplayWindow
from syncer.sinks.build import aws_client, build_sinks
from tests.integration.conftest import Stack, syncer_run_command, wait_until, write_config
from tests.integration.test_kinesis_lambda import (
    KinesisStack,
    kinesis_stack,
    random_workload,
    set_stale_cache,
)
from tests.kinesis_bridge import Delivery, encode, put_all
from tests.kinesis_demo import run_kinesis_demo

pytestmark = pytest.mark.integration

ONCE = PollOptions(once=True, idle_sleep_s=0.05, batch_size=7)


@pytest.fixture
def kstack(stack: Stack) -> Iterator[KinesisStack]:
    yield from kinesis_stack(stack, "syncer-run")


def _run(ks: KinesisStack, checkpoints: Path, **kwargs: Any) -> Any:
    options = kwargs.pop("options", ONCE)
    return run_poller(
        ks.stack.config,
        options,
        kinesis_streams=[ks.name],
        checkpoint_file=str(checkpoints),
        **kwargs,
    )


class Spy:
    """Stands in for process_batch: hands every batch on, and keeps (shard, sequence numbers)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []

    def __call__(self, records: Sequence[Any], *args: Any, **kwargs: Any) -> BatchOutcome:
        shard = records[0]["eventID"].split(":")[0]
        self.batches.append((shard, [r["kinesis"]["sequenceNumber"] for r in records]))
        return pipeline.process_batch(records, *args, **kwargs)

    @property
    def delivered(self) -> list[tuple[str, str]]:
        return [(shard, number) for shard, numbers in self.batches for number in numbers]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    recorder = Spy()
    monkeypatch.setattr(poller, "process_batch", recorder)
    return recorder


def _documents(ks: KinesisStack) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every document of the index, tombstones included: id -> (_seq_no, _source)."""
    client = ks.stack.sinks.opensearch
    client.indices.refresh(index=f"{ks.stack.index}-*")
    response = client.search(
        index=f"{ks.stack.index}-*",
        body={"query": {"match_all": {}}, "size": 10000, "seq_no_primary_term": True},
    )
    return {hit["_id"]: (hit["_seq_no"], hit["_source"]) for hit in response["hits"]["hits"]}


def _checkpoints(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def test_run_once_follows_a_kinesis_stream_to_the_table(
    kstack: KinesisStack, tmp_path: Path
) -> None:
    """A workload published shuffled and duplicated, at both precisions, converges."""
    rng = random.Random("run-kinesis")
    bridge = kstack.bridge("MILLISECOND", Delivery(seed=3, shuffle=True, duplicate_share=0.3))
    checkpoints = tmp_path / "checkpoints.json"
    for precision in ("MILLISECOND", "MICROSECOND"):  # the precision changes mid-stream
        # given a random workload on the table, published out of order and with duplicates
        bridge.precision = precision
        stale = random_workload(kstack, rng, writes=40, keys=12)
        published = bridge.pump()
        set_stale_cache(kstack, stale)
        # when syncer run drains the Kinesis stream
        summary = _run(kstack, checkpoints)
        # then the index equals the table, no cache key kept its stale value
        assert summary.caught_up
        assert kstack.stack.indexed() == kstack.stack.scanned()
        assert [n for n in stale if kstack.stack.sinks.redis.get(n) is not None] == []
    # and each shard is checkpointed at its last record, under the Kinesis stream's ARN
    last: dict[str, str] = {}
    for shard_id, records in kstack.shard_events().items():
        last[shard_id] = records[-1]["kinesis"]["sequenceNumber"]
    saved = _checkpoints(checkpoints)[kstack.arn]
    assert {k: v["sequence_number"] for k, v in saved.items()} == last
    assert published


def test_the_table_s_kinesis_stream_comes_from_its_configuration(
    kstack: KinesisStack, tmp_path: Path
) -> None:
    """`syncer run --once` follows the table's kinesis_stream (by ARN), not its DynamoDB stream."""
    config_path = tmp_path / "kinesis.toml"
    text = kstack.stack.config_path.read_text()
    config_path.write_text(text + f'kinesis_stream = "{kstack.arn}"\n')
    for n in range(5):
        kstack.put(n, n)
    kstack.bridge("MICROSECOND").pump()
    checkpoints = tmp_path / "cli.json"
    result = CliRunner().invoke(
        main,
        [
            *("run", "--config", str(config_path), "--once"),
            *("--checkpoint-file", str(checkpoints), "--metrics-port", "0"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(kstack.stack.indexed()) == 5
    assert kstack.stack.indexed() == kstack.stack.scanned()
    assert list(_checkpoints(checkpoints)) == [kstack.arn]  # nothing of the DynamoDB stream


def test_a_killed_run_resumes_from_its_checkpoints_and_loses_nothing(
    kstack: KinesisStack, tmp_path: Path
) -> None:
    """SIGKILL mid-stream, then a second run: every change is applied, the index equals the table."""
    rng = random.Random("kill")
    random_workload(kstack, rng, writes=120, keys=40)
    kstack.bridge("MILLISECOND", Delivery(seed=9, shuffle=True, duplicate_share=0.2)).pump()
    checkpoints = tmp_path / "checkpoints.json"
    log_path = tmp_path / "run.log"
    command = syncer_run_command(kstack.stack.config_path, checkpoints, metrics_port=0)
    command += ["--kinesis-stream", kstack.name, "--batch-size", "3"]
    # given a worker killed once some of its checkpoints are saved
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            wait_until(
                lambda: process.poll() is not None or kstack.arn in _checkpoints(checkpoints),
                timeout_s=60,
            )
            assert process.poll() is None, log_path.read_text()
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=20)
    saved = _checkpoints(checkpoints)[kstack.arn]
    # when a worker starts again
    summary = _run(kstack, checkpoints)
    # then it resumed after the saved checkpoints, and the index equals the table
    total = sum(len(records) for records in kstack.shard_events().values())
    assert saved
    assert summary.records < total  # the checkpointed records were not read again
    assert kstack.stack.indexed() == kstack.stack.scanned()


def test_a_resharded_stream_is_read_parents_before_children(
    kstack: KinesisStack, tmp_path: Path, spy: Spy
) -> None:
    """After MergeShards the child (two parents) is read only once both parents are finished."""
    rng = random.Random("merge")
    bridge = kstack.bridge("MILLISECOND", Delivery(seed=2, shuffle=True))
    random_workload(kstack, rng, writes=30, keys=10)
    bridge.pump()
    shards = kstack.kinesis.list_shards(StreamName=kstack.name)["Shards"]
    first, second = sorted(shard["ShardId"] for shard in shards)
    # given the two shards merged into one, which gets more changes
    kstack.kinesis.merge_shards(
        StreamName=kstack.name, ShardToMerge=first, AdjacentShardToMerge=second
    )
    random_workload(kstack, rng, writes=30, keys=10)
    bridge.pump()
    (child,) = {
        s["ShardId"]
        for s in kstack.kinesis.list_shards(StreamName=kstack.name)["Shards"]
        if s.get("AdjacentParentShardId")
    }
    # when syncer run drains the stream
    summary = _run(kstack, tmp_path / "checkpoints.json")
    # then every parent's record was handled before the child's first
    order = [shard for shard, _ in spy.delivered]
    assert {first, second, child} <= set(order)
    first_child = order.index(child)
    assert all(shard == child for shard in order[first_child:])
    assert summary.caught_up
    assert kstack.stack.indexed() == kstack.stack.scanned()
    saved = _checkpoints(tmp_path / "checkpoints.json")[kstack.arn]
    assert [saved[first]["finished"], saved[second]["finished"]] == [True, True]
    assert not saved[child]["finished"]


def test_a_stream_resharded_by_update_shard_count_converges(
    kstack: KinesisStack, tmp_path: Path, spy: Spy
) -> None:
    """UpdateShardCount (the emulator splits every shard) between two runs: nothing is lost.

    The emulator's split is not AWS's: it re-puts the parent's records, and later ones, into
    the first shard whose hash range holds the key, which is still the closed parent. So this
    checks only that a resharded stream is followed to the table and its closed shards end;
    parents before children is checked with MergeShards above and in
    tests/unit/test_poller_kinesis.py.
    """
    rng = random.Random("split")
    bridge = kstack.bridge("MICROSECOND", Delivery(seed=6, shuffle=True, duplicate_share=0.2))
    checkpoints = tmp_path / "checkpoints.json"
    random_workload(kstack, rng, writes=30, keys=10)
    bridge.pump()
    _run(kstack, checkpoints)
    parents = {s["ShardId"] for s in kstack.kinesis.list_shards(StreamName=kstack.name)["Shards"]}
    # given the stream resharded from 2 to 4 shards, and more changes
    kstack.kinesis.update_shard_count(
        StreamName=kstack.name, TargetShardCount=4, ScalingType="UNIFORM_SCALING"
    )
    random_workload(kstack, rng, writes=30, keys=10)
    bridge.pump()
    spy.batches.clear()
    # when syncer run goes on from its checkpoints
    summary = _run(kstack, checkpoints)
    # then the closed parents are finished, and the index equals the table
    assert summary.caught_up
    assert spy.delivered
    saved = _checkpoints(checkpoints)[kstack.arn]
    assert all(saved[parent]["finished"] for parent in parents)
    assert kstack.stack.indexed() == kstack.stack.scanned()


def test_a_record_of_an_unknown_table_is_dead_lettered_alone(
    kstack: KinesisStack, tmp_path: Path
) -> None:
    """A change naming a table not configured goes to the dead letters; the rest is applied."""
    kstack.put(1, 10)
    kstack.put(2, 20)
    bridge = kstack.bridge("MILLISECOND")
    good = [dict(p.payload) for p in bridge.pump()]
    stranger = {**good[0], "tableName": f"not-configured-{kstack.suffix}"}
    put_all(kstack.kinesis, kstack.name, [(encode(stranger), "stranger")])
    kstack.put(3, 30)
    bridge.pump()
    letters_path = Path(kstack.stack.config.deadletter.file or "")
    before = letters_path.read_text().splitlines() if letters_path.exists() else []
    summary = _run(kstack, tmp_path / "checkpoints.json")
    assert summary.caught_up
    assert kstack.stack.indexed() == kstack.stack.scanned()
    letters = [json.loads(line) for line in letters_path.read_text().splitlines()[len(before) :]]
    assert len(letters) == 1
    assert f"'not-configured-{kstack.suffix}' is not configured" in json.dumps(letters[0])
    # and its shard's checkpoint went past it: it is not read again
    again = _run(kstack, tmp_path / "checkpoints.json")
    assert again.records == 0


# -- replays ---------------------------------------------------------------------------------


def _window(start: dt.datetime, until: dt.datetime | None = None, margin_s: float = 0.0) -> Any:
    now = dt.datetime.now(dt.UTC)
    return ReplayWindow(start, until or now, margin_s)


def _follow_then_snapshot(ks: KinesisStack, tmp_path: Path) -> dict[str, Any]:
    rng = random.Random("replay")
    random_workload(ks, rng, writes=40, keys=10)
    ks.bridge("MILLISECOND", Delivery(seed=1, shuffle=True, duplicate_share=0.3)).pump()
    follower = tmp_path / "checkpoints.json"
    _run(ks, follower)
    assert ks.stack.indexed() == ks.stack.scanned()
    return _checkpoints(follower)


def test_a_replay_over_applied_changes_leaves_index_and_cache_as_they_were(
    kstack: KinesisStack, tmp_path: Path
) -> None:
    """Replaying what was applied writes no document and puts nothing in the cache."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    follower = _follow_then_snapshot(kstack, tmp_path)
    documents = _documents(kstack)
    redis = kstack.stack.sinks.redis
    cache_names = [f"unrelated-{kstack.suffix}", f"product:{kstack.pk(999)}"]
    for name in cache_names:
        redis.set(name, b"filled", ex=600)
    # when the whole window is replayed
    summary = _run(kstack, tmp_path / "checkpoints.json", replay=_window(start))
    # then no document changed (same _seq_no, same source), and nothing entered the cache
    assert summary.records > 0
    assert summary.caught_up
    assert _documents(kstack) == documents
    assert [redis.get(name) for name in cache_names] == [b"filled", b"filled"]
    # and the follower's checkpoints are untouched, the replay's own are gone (it finished)
    assert _checkpoints(tmp_path / "checkpoints.json") == follower
    assert sorted(path.name for path in tmp_path.glob("*.json")) == ["checkpoints.json"]


def test_a_replay_repairs_a_deleted_and_a_damaged_document(
    kstack: KinesisStack, tmp_path: Path
) -> None:
    """A document deleted from OpenSearch and one overwritten by a stranger come back right."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    for n in range(4):
        kstack.put(n, 100 + n)
    kstack.bridge("MICROSECOND").pump()
    _run(kstack, tmp_path / "checkpoints.json")
    expected = kstack.stack.scanned()
    client = kstack.stack.sinks.opensearch
    # given one document deleted behind syncer's back and one overwritten without its version
    client.delete(index=kstack.stack.index, id=f"{kstack.pk(1)}|v1", refresh=True)
    client.index(
        index=kstack.stack.index,
        id=f"{kstack.pk(2)}|v1",
        body={"pk": kstack.pk(2), "sk": "v1", "price": -1},
        refresh=True,
    )
    assert kstack.stack.indexed() != expected
    # when the window of their changes is replayed
    _run(kstack, tmp_path / "checkpoints.json", replay=_window(start))
    # then the index equals the table again
    assert kstack.stack.indexed() == expected


def test_a_replay_reads_only_its_window(kstack: KinesisStack, tmp_path: Path) -> None:
    """Records that reached Kinesis before --from or after --until (and its margin) are not read."""
    bridge = kstack.bridge("MILLISECOND")
    kstack.put(1, 1)
    bridge.pump()
    time.sleep(1.6)  # more than the clock margin the start is moved back by
    start = dt.datetime.now(dt.UTC)
    kstack.put(2, 2)
    bridge.pump()
    until = dt.datetime.now(dt.UTC)
    time.sleep(0.5)
    kstack.put(3, 3)
    bridge.pump()
    checkpoints = tmp_path / "checkpoints.json"
    summary = _run(kstack, checkpoints, replay=_window(start, until, margin_s=0.2))
    assert summary.caught_up
    assert set(kstack.stack.indexed()) == {f"{kstack.pk(2)}|v1"}
    assert _checkpoints(checkpoints).get(kstack.arn) is None  # no follower checkpoint made


def test_a_stopped_replay_resumes_where_it_stopped(
    kstack: KinesisStack, tmp_path: Path, spy: Spy
) -> None:
    """A replay stopped early keeps its own checkpoints; run again it goes on from them."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    follower = _follow_then_snapshot(kstack, tmp_path)
    checkpoints = tmp_path / "checkpoints.json"
    window = _window(start)
    spy.batches.clear()
    # given a replay stopped after a few passes
    stopped = _run(
        kstack,
        checkpoints,
        replay=window,
        options=PollOptions(batch_size=3, idle_sleep_s=0.05, max_passes=3),
    )
    assert not stopped.caught_up
    assert _checkpoints(checkpoints) == follower  # the follower's file is not the replay's
    (replay_file,) = tmp_path.glob("checkpoints.replay-*.json")
    assert list(_checkpoints(replay_file)) == [window.checkpoint_key(kstack.arn)]
    first = list(spy.delivered)
    spy.batches.clear()
    # when it is run again with the same window
    resumed = _run(kstack, checkpoints, replay=window)
    # then it reads only what it had not handled, and ends with its checkpoints dropped
    assert resumed.caught_up
    assert not set(first) & set(spy.delivered)
    total = sum(len(records) for records in kstack.shard_events().values())
    assert len(first) + len(spy.delivered) == total
    assert _checkpoints(checkpoints) == follower
    assert not replay_file.exists()  # the replay ended: nothing left to resume


def test_cli_replays_a_window_given_as_relative_times(kstack: KinesisStack, tmp_path: Path) -> None:
    """`syncer run --kinesis-stream S --from -5m` replays into the index and exits 0."""
    for n in range(3):
        kstack.put(n, n)
    kstack.bridge("MILLISECOND").pump()
    checkpoints = tmp_path / "cli.json"
    result = CliRunner().invoke(
        main,
        [
            *("run", "--config", str(kstack.stack.config_path), "--kinesis-stream", kstack.arn),
            *("--from", "-5m", "--until", "now", "--until-margin-s", "0"),
            *("--checkpoint-file", str(checkpoints), "--metrics-port", "0"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert kstack.stack.indexed() == kstack.stack.scanned()
    assert len(kstack.stack.indexed()) == 3
    assert _checkpoints(checkpoints) == {}  # the replay ended: its checkpoints are dropped


def test_a_replay_is_refused_on_a_dynamodb_streams_table(stack: Stack, tmp_path: Path) -> None:
    """--from on a table followed through its DynamoDB stream says why it cannot be done."""
    with pytest.raises(ConfigError, match="24 hours and cannot start at a time"):
        run_poller(
            load_config(str(stack.config_path)),
            ONCE,
            checkpoint_file=str(tmp_path / "c.json"),
            replay=_window(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
        )


def test_cli_refuses_a_window_that_ends_before_it_starts(stack: Stack) -> None:
    """--from after --until is an error naming both, before anything is read."""
    result = CliRunner().invoke(
        main,
        [
            *("run", "--config", str(stack.config_path), "--kinesis-stream", "x"),
            *("--from", "2026-12-01T10:00:00Z", "--until", "2026-12-01T09:00:00Z"),
        ],
    )
    assert result.exit_code != 0
    assert "is after --until" in result.output


def test_the_demo_runs_on_a_kinesis_stream(tmp_path: Path) -> None:
    """`make demo SOURCE=kinesis`: the same search answers, cache and tombstone as on Streams."""
    name = f"syncer-demo-kinesis-{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path / "syncer.toml", "unused", "unused")
    config = load_config(str(path))
    lines: list[str] = []
    try:
        report = run_kinesis_demo(config, 20, lines.append, table_name=name, stream=name)
        assert any("published to Kinesis stream" in line for line in lines)
        assert report.full_text_titles[0] == "Leather belt bag"
        assert report.deleted_title not in report.full_text_titles
        assert report.deleted_hits == 0
        assert report.tombstone is not None
        assert report.tombstone[SYNCER_FIELD]["deleted"] is True
        assert report.cached_before == {k: True for k in report.cached_before}
        assert report.cached_after == {
            "product:PRODUCT#sku-0001": False,
            "product:PRODUCT#sku-0004": True,
        }
    finally:
        sinks = build_sinks(config)
        try:
            for route in demo_table(name).resolved_routes:
                sinks.opensearch.indices.delete(index=f"{route.index}-*", ignore_unavailable=True)
                sinks.opensearch.indices.delete_index_template(
                    name=f"syncer-{route.index}", ignore=404
                )
            sinks.redis.unlink("product:PRODUCT#sku-0001", "product:PRODUCT#sku-0004")
        finally:
            sinks.close()
        aws_client("dynamodb").delete_table(TableName=name)
        aws_client("kinesis").delete_stream(StreamName=name, EnforceConsumerDeletion=True)
