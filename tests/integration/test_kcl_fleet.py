"""A fleet of two `syncer kcl-worker`s on KCL 3, one killed with SIGKILL mid-stream (issue 25).

Real OpenSearch (through a fault proxy), Redis and the emulator's DynamoDB and Kinesis: the
table's changes reach a 4-shard Kinesis stream through tests/kinesis_bridge.py, shuffled and
duplicated. While OpenSearch refuses every write, no record published since can be handled,
so no shard's checkpoint in KCL's lease table may pass the first of them; a worker killed then
must leave its shards at such checkpoints, and the survivor must take them over and converge.

The emulator needs two things that AWS does not, both passed only here (tests/kcl/README.md):
``KinesisClientUtil.java`` first on the class path (KCL's Kinesis client over HTTP/1.1) and
``-Daws.cborEnabled=false`` (JSON instead of CBOR). About a minute.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncer.sinks.build import aws_client
from tests.integration.conftest import OPENSEARCH_URL, Stack, write_config
from tests.integration.faults import opensearch_proxy
from tests.integration.test_kinesis_lambda import KinesisStack, random_workload, set_stale_cache
from tests.kinesis_bridge import Delivery, Published, create_kinesis_stream, read_kinesis

pytestmark = pytest.mark.integration
SHIM = Path(__file__).resolve().parents[1] / "kcl" / "KinesisClientUtil.java"
SHARDS = 4
KEYS = 24
# KCL's timings, shortened so that leases are assigned and failed over in seconds, not minutes.
FAST_KCL = {
    "failoverTimeMillis": "5000",
    "leaseAssignmentIntervalMillis": "2000",
    "shardSyncIntervalMillis": "5000",
    "idleTimeBetweenReadsInMillis": "250",
    "parentShardPollIntervalMillis": "1000",
    "gracefulLeaseHandoffTimeoutMillis": "5000",
    "shutdownGraceMillis": "5000",
    "maxRecords": "20",  # small batches: many checkpoints, so "mid-stream" means something
}
RESILIENCE = (
    "[resilience]\nmax_attempts = 2\ninitial_backoff_s = 0.05\nmax_backoff_s = 0.5\n"
    "max_retry_time_s = 2.0\nbreaker_fail_max = 1000\nbreaker_reset_timeout_s = 1.0\n"
)


@pytest.fixture(scope="session")
def emulator_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test-only HTTP/1.1 KinesisClientUtil, compiled against amazon-kclpy's jars."""
    from syncer.runner.kcldaemon import kclpy_jars

    javac = shutil.which("javac")
    if javac is None:
        pytest.fail("javac not found: the KCL fleet test compiles its emulator shim (JDK 17)")
    out = tmp_path_factory.mktemp("kcl-shim")
    subprocess.run(
        [javac, "-cp", str(kclpy_jars() / "*"), "-d", str(out), str(SHIM)],
        check=True,
        capture_output=True,
    )
    return out


@dataclass
class Worker:
    """One `syncer kcl-worker` process (it runs java in a process group of its own)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tree(self) -> list[int]:
        """The worker, its java and java's record processors: every descendant's pid."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
        found, frontier = [self.process.pid], [self.process.pid]
        while frontier:
            children = [pid for pid, parent in parents.items() if parent in frontier]
            found += children
            frontier = children
        return found

    def kill(self) -> None:
        """SIGKILL the whole worker at once: no shutdown, no last checkpoint."""
        for pid in self.tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL whatever is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        self.kill()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text[-lines:])


@dataclass
class Fleet:
    ks: KinesisStack
    application: str
    shim: Path
    tmp: Path
    workers: dict[str, Worker]

    def start(self, name: str) -> Worker:
        log = self.tmp / f"{name}.log"
        command = [
            str(Path(sys.executable).parent / "syncer"),
            "kcl-worker",
            "--config",
            str(self.ks.stack.config_path),
            "--stream",
            self.ks.name,
            "--application",
            self.application,
            "--worker-id",
            f"{self.application}-{name}",
            "--jvm-option=-Xmx256m",
            "--jvm-option=-Daws.cborEnabled=false",  # the emulator answers CBOR with HTTP 500
            "--class-path-first",
            str(self.shim),
            "--properties-out",
            str(self.tmp / f"{name}.properties"),
            *(f"--property={key}={value}" for key, value in FAST_KCL.items()),
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(name, process, log)
        self.workers[name] = worker
        return worker

    def owner(self, name: str) -> str:
        return f"{self.application}-{name}"

    def leases(self) -> dict[str, dict[str, Any]]:
        """KCL's lease table: shard id -> its lease (owner, checkpoint)."""
        dynamodb = self.ks.stack.dynamodb
        try:
            items = dynamodb.scan(TableName=self.application, ConsistentRead=True)["Items"]
        except dynamodb.exceptions.ResourceNotFoundException:
            return {}
        return {
            item["leaseKey"]["S"]: {
                "owner": item.get("leaseOwner", {}).get("S"),
                "checkpoint": item.get("checkpoint", {}).get("S"),
            }
            for item in items
            if item["leaseKey"]["S"].startswith("shardId-")
        }

    def leader(self) -> str | None:
        """The worker holding KCL 3's leader lock (it assigns the leases), if any yet."""
        dynamodb = self.ks.stack.dynamodb
        try:
            found = dynamodb.get_item(
                TableName=f"{self.application}-CoordinatorState",
                Key={"key": {"S": "Leader"}},
                ConsistentRead=True,
            )
        except dynamodb.exceptions.ResourceNotFoundException:
            return None
        owner = found.get("Item", {}).get("ownerName", {}).get("S")
        return str(owner) if owner else None

    def owners(self) -> dict[str, str | None]:
        return {shard: lease["owner"] for shard, lease in self.leases().items()}

    def logs(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers.values())


@pytest.fixture
def fleet(stack: Stack, tmp_path: Path, emulator_shim: Path) -> Iterator[Fleet]:
    kinesis = aws_client("kinesis")
    suffix = uuid.uuid4().hex[:8]
    name = f"syncer-kcl-{suffix}"
    arn = create_kinesis_stream(kinesis, name, shard_count=SHARDS)
    fleet = Fleet(
        KinesisStack(stack, kinesis, name, arn, suffix), name, emulator_shim, tmp_path, {}
    )
    try:
        yield fleet
    finally:
        for worker in fleet.workers.values():
            worker.stop()
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        for table in (name, f"{name}-CoordinatorState", f"{name}-WorkerMetricStats"):
            with contextlib.suppress(stack.dynamodb.exceptions.ResourceNotFoundException):
                stack.dynamodb.delete_table(TableName=table)


def wait_for(what: str, condition: Callable[[], bool], fleet: Fleet, timeout_s: float) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails with the workers' logs."""
    started = time.monotonic()
    while not condition():
        for key, worker in fleet.workers.items():
            if not key.endswith("-killed") and worker.process.poll() is not None:
                pytest.fail(
                    f"worker {worker.name} exited ({worker.process.returncode})\n{fleet.logs()}"
                )
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{fleet.logs()}")
        time.sleep(0.5)
    return time.monotonic() - started


def first_sequence_per_shard(published: list[Published]) -> dict[str, int]:
    first: dict[str, int] = {}
    for record in published:
        number = int(record.sequence_number)
        first[record.shard_id] = min(first.get(record.shard_id, number), number)
    return first


def last_sequence_per_shard(ks: KinesisStack) -> dict[str, str]:
    """Each shard's last record now in the stream, as KCL writes it in a checkpoint."""
    last: dict[str, str] = {}
    for shard_id, page in read_kinesis(ks.kinesis, ks.name):
        for record in page:
            number = record["SequenceNumber"]
            if shard_id not in last or int(number) > int(last[shard_id]):
                last[shard_id] = number
    return last


def checkpoints_passed(fleet: Fleet, unhandled: dict[str, int]) -> dict[str, str]:
    """Shards whose checkpoint is at or after their first unhandled record."""
    passed = {}
    for shard, lease in fleet.leases().items():
        checkpoint = lease["checkpoint"] or ""
        if checkpoint.isdigit() and shard in unhandled and int(checkpoint) >= unhandled[shard]:
            passed[shard] = f"checkpoint {checkpoint} >= first unhandled {unhandled[shard]}"
    return passed


def converged(ks: KinesisStack, stale: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        if ks.stack.indexed() != ks.stack.scanned():
            return False
        return all(ks.stack.sinks.redis.get(name) is None for name in stale)

    return check


def test_a_fleet_loses_nothing_when_a_worker_is_killed_mid_stream(fleet: Fleet) -> None:
    """Two workers share 4 shards; one is SIGKILLed while OpenSearch refuses every write: no
    checkpoint passes an unhandled record, the other takes its shards, and the index and the
    cache end equal to the table."""
    ks, rng = fleet.ks, random.Random(f"kcl-fleet-{fleet.application}")
    bridge = ks.bridge("MILLISECOND", Delivery(seed=7, shuffle=True, duplicate_share=0.3))
    with opensearch_proxy(OPENSEARCH_URL) as proxy:
        write_config(
            ks.stack.config_path,
            ks.stack.table,
            ks.stack.index,
            opensearch=f'[opensearch]\nurl = "{proxy.url}"\n',
            resilience=RESILIENCE,
        )
        # given a disordered, duplicated workload on the stream, and two workers
        stale = random_workload(ks, rng, writes=60, keys=KEYS)
        bridge.pump()
        set_stale_cache(ks, stale)
        fleet.start("A")
        fleet.start("B")
        # when both hold leases, the first phase is indexed
        wait_for(
            "both workers hold leases",
            lambda: {fleet.owner("A"), fleet.owner("B")} <= set(fleet.owners().values()),
            fleet,
            timeout_s=120,
        )
        wait_for("the first phase converges", converged(ks, stale), fleet, timeout_s=90)
        # when OpenSearch refuses every write and more changes arrive, mid-stream
        proxy.mode = "http_503"
        stale = random_workload(ks, rng, writes=60, keys=KEYS)
        unhandled = first_sequence_per_shard(bridge.pump())
        set_stale_cache(ks, stale)
        refused = proxy.injected["http_503"]
        wait_for(
            "both workers retry refused writes",
            lambda: proxy.injected["http_503"] >= refused + 8,
            fleet,
            timeout_s=60,
        )
        # The worker that is not KCL's leader is killed: a dead leader's lock is only taken
        # over after its 2-minute lease (hard-coded in KCL 3.1.3), which would add minutes.
        leader = fleet.leader()
        assert leader in {fleet.owner("A"), fleet.owner("B")}, leader
        victim, survivor = ("B", "A") if leader == fleet.owner("A") else ("A", "B")
        victim_shards = {s for s, o in fleet.owners().items() if o == fleet.owner(victim)}
        assert victim_shards, f"{victim} holds no lease to fail over\n{fleet.logs()}"
        # and that worker is killed with SIGKILL
        fleet.workers[victim].kill()
        fleet.workers[f"{victim}-killed"] = fleet.workers.pop(victim)
        killed_at = time.monotonic()
        # then no checkpoint passed a record that was not handled
        assert checkpoints_passed(fleet, unhandled) == {}
        # and when yet more changes arrive and OpenSearch comes back
        more = random_workload(ks, rng, writes=40, keys=KEYS)
        bridge.pump()
        set_stale_cache(ks, sorted({*stale, *more}))
        assert checkpoints_passed(fleet, unhandled) == {}
        proxy.mode = "pass"
        # then the survivor takes every shard the killed worker held
        wait_for(
            f"{survivor} owns every shard",
            lambda: set(fleet.owners().values()) == {fleet.owner(survivor)},
            fleet,
            timeout_s=120,
        )
        failover_s = time.monotonic() - killed_at
        # and the index and the cache end equal to the table
        wait_for("the fleet converges", converged(ks, sorted({*stale, *more})), fleet, 90)
        assert len(fleet.leases()) == SHARDS
        # and with everything handled, every shard is checkpointed at its last record
        last = last_sequence_per_shard(ks)
        expected = {shard: last.get(shard, "TRIM_HORIZON") for shard in fleet.leases()}
        wait_for(
            "every shard checkpointed at its last record",
            lambda: {s: lease["checkpoint"] for s, lease in fleet.leases().items()} == expected,
            fleet,
            timeout_s=30,
        )
        # and SIGTERM stops the survivor gracefully (forwarded to its daemon and processors)
        stopping = fleet.workers[survivor].process
        stopping.send_signal(signal.SIGTERM)
        assert stopping.wait(timeout=30) == 0, fleet.logs()
    print(f"failover: {survivor} owned {sorted(victim_shards)} {failover_s:.1f} s after the kill")


def test_kcl_worker_writes_the_properties_of_an_existing_stream(fleet: Fleet) -> None:
    """--write-only: the properties name the stream, the emulator's endpoints and the
    processor's command; the java command is printed, nothing is started."""
    out = fleet.tmp / "worker.properties"
    result = _kcl_worker(fleet, fleet.ks.arn, "--properties-out", str(out), "--write-only")
    assert result.returncode == 0, result.stderr
    properties = dict(
        line.split(" = ", 1) for line in out.read_text().splitlines() if " = " in line
    )
    assert properties["streamName"] == fleet.ks.name
    assert properties["applicationName"] == fleet.application
    assert properties["kinesisEndpoint"] == os.environ["AWS_ENDPOINT_URL"]
    assert properties["executableName"].endswith(
        f"-m syncer.runner.kcl --config {fleet.ks.stack.config_path} --stream-arn {fleet.ks.arn}"
    )
    assert "software.amazon.kinesis.multilang.MultiLangDaemon" in result.stdout
    assert fleet.leases() == {}  # no daemon ran: KCL made no lease table


def test_kcl_worker_names_a_missing_stream(fleet: Fleet) -> None:
    """A stream that does not exist: one Error line saying so, exit 1, nothing started."""
    result = _kcl_worker(fleet, f"{fleet.ks.name}-missing")
    assert result.returncode == 1
    assert f"Kinesis stream '{fleet.ks.name}-missing' not found" in result.stderr


def _kcl_worker(fleet: Fleet, stream: str, *more: str) -> subprocess.CompletedProcess[str]:
    """`syncer kcl-worker` on the fleet's configuration and application, as a user runs it."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "syncer"),
            "kcl-worker",
            "--config",
            str(fleet.ks.stack.config_path),
            "--stream",
            stream,
            "--application",
            fleet.application,
            *more,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
