"""The `make package` output runs in AWS's Lambda runtime: the Runtime Interface Emulator with
awslambdaric (`make lambda-runtime`), invoked over HTTP with a real stream event from the emulator.

The package runs from build/lambda alone (python -S: none of this machine's site-packages), with
the runtime's awslambdaric and boto3 after it on the path as /var/runtime is, and the packaged
config with the environment template.yaml sets; only the table and index names are this test's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from syncer.sinks.build import aws_client
from tests.integration.conftest import (
    MOTO_URL,
    OPENSEARCH_URL,
    REDIS_URL,
    REPO_ROOT,
    SERVICES_DIR,
    Stack,
    free_port,
    wait_until,
)
from tests.integration.test_services_script import listening
from tests.kinesis_bridge import (
    Delivery,
    TableToKinesisBridge,
    create_kinesis_stream,
    lambda_kinesis_event,
    read_kinesis,
)

PACKAGE = REPO_ROOT / "build" / "lambda"
RUNTIME_DIR = SERVICES_DIR / "lambda-runtime"
RIE = RUNTIME_DIR / "bin" / "aws-lambda-rie"
RUNTIME_SITE = RUNTIME_DIR / "python"
INVOCATIONS = "/2015-03-31/functions/function/invocations"
# The emulator's own lines on each phase: INIT REPORT (the runtime started and imported the
# handler), INVOKE RTDONE (the handler's time), REPORT (both, as the invoker saw them).
_REPORT = re.compile(r"^.*(?:INIT REPORT|INVOKE RTDONE|REPORT RequestId).*$", re.MULTILINE)


@pytest.fixture(scope="module")
def package() -> Path:
    """build/lambda as `make package` builds it now (from this tree's sources and the lock)."""
    if sys.version_info[:2] != (3, 11):
        pytest.fail(f"the package is built for CPython 3.11 (template.yaml); this is {sys.version}")
    built = subprocess.run(
        ["make", "package"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return PACKAGE


@dataclass
class Emulator:
    """A running aws-lambda-rie with the package; its output (the function's too) in ``log``."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def invoke(self, event: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.url + INVOCATIONS,
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def reports(self) -> list[str]:
        """The emulator's INIT REPORT, INVOKE RTDONE and REPORT lines so far."""
        return _REPORT.findall(self.log.read_text(errors="replace"))


def _lambda_config(package: Path, stack: Stack, tmp_path: Path) -> Path:
    """The packaged syncer.toml with this test's table and index instead of `catalog`."""
    text = (package / "syncer.toml").read_text()
    text, tables = re.subn(r'(?m)^name = "catalog"$', f'name = "{stack.table}"', text)
    text, indices = re.subn(r'(?m)^index = "catalog"$', f'index = "{stack.index}"', text)
    assert (tables, indices) == (1, 1), "deploy/syncer.lambda.toml no longer names table catalog"
    path = tmp_path / "lambda.toml"
    path.write_text(text)
    return path


@pytest.fixture
def emulator(package: Path, stack: Stack, queue_url: str, tmp_path: Path) -> Iterator[Emulator]:
    """aws-lambda-rie on free loopback ports, running syncer.handler.lambda_handler."""
    for needed in (RIE, RUNTIME_SITE / "awslambdaric"):
        if not needed.exists():
            pytest.fail(f"{needed} is missing; install it: make lambda-runtime")
    rie_port, api_port = free_port(), free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{package}:{RUNTIME_SITE}",
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only
        "LAMBDA_TASK_ROOT": str(package),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": MOTO_URL,
        "AWS_LAMBDA_FUNCTION_NAME": "syncer-rie-test",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "60",  # template.yaml's Timeout
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        # template.yaml's environment
        "SYNCER_CONFIG": str(_lambda_config(package, stack, tmp_path)),
        "OPENSEARCH_URL": OPENSEARCH_URL,
        "REDIS_URL": REDIS_URL,
        "SYNCER_DEADLETTER_QUEUE_URL": queue_url,
    }
    log = tmp_path / "rie.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(RIE),
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{rie_port}",
                "--runtime-api-address",
                f"127.0.0.1:{api_port}",
                sys.executable,
                "-S",
                "-m",
                "awslambdaric",
                "syncer.handler.lambda_handler",
            ],
            cwd=package,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Emulator(f"http://127.0.0.1:{rie_port}", log, process)
    try:
        wait_until(lambda: listening(rie_port) or process.poll() is not None, timeout_s=30)
        assert process.poll() is None, log.read_text()
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _index_state(stack: Stack) -> dict[str, Any]:
    """Every document and tombstone of the index, with its sequence number and source."""
    client = stack.sinks.opensearch
    client.indices.refresh(index=f"{stack.index}-*")
    response = client.search(
        index=f"{stack.index}-*",
        body={"query": {"match_all": {}}, "size": 10000, "seq_no_primary_term": True},
    )
    return {
        hit["_id"]: (hit["_seq_no"], hit["_primary_term"], hit["_source"])
        for hit in response["hits"]["hits"]
    }


def _write_items(stack: Stack, run: str) -> list[str]:
    """Inserts, updates and deletes in the table: ~100 stream records; the product keys."""
    keys = [f"{run}-{n}" for n in range(60)]
    for n, pk in enumerate(keys):
        stack.put(
            {
                "pk": {"S": pk},
                "sk": {"S": "v"},
                "name": {"S": f"product {n}"},
                "category": {"S": f"{run}-c{n % 4}"},
                "price": {"N": str(n)},
                "cost": {"N": "1"},
            }
        )
    for n, pk in enumerate(keys[:30]):
        stack.put({"pk": {"S": pk}, "sk": {"S": "v"}, "name": {"S": f"renamed {n}"}})
    for pk in keys[50:]:
        stack.delete(pk, "v")
    return keys


def test_the_package_runs_in_the_lambda_runtime_and_a_replay_changes_nothing(
    emulator: Emulator, stack: Stack
) -> None:
    """A real stream event through the RIE: no failures, the index matches the table, the
    changed items' cache keys are gone; the same event again changes nothing."""
    run = uuid.uuid4().hex[:10]
    keys = _write_items(stack, run)
    event = {"Records": stack.stream_records()}
    cache = redis.Redis.from_url(REDIS_URL)
    cached = [f"product:{pk}" for pk in keys] + [f"category:{run}-c{n}" for n in range(4)]
    cache.mset(dict.fromkeys(cached, b"stale"))

    started = time.perf_counter()
    first = emulator.invoke(event)
    first_s = time.perf_counter() - started

    assert first == {"batchItemFailures": []}, emulator.log.read_text()[-3000:]
    assert stack.indexed() == stack.scanned()
    assert cache.exists(*cached) == 0
    before_replay = _index_state(stack)

    replayed = emulator.invoke(event)

    assert replayed == {"batchItemFailures": []}
    assert _index_state(stack) == before_replay
    wait_until(lambda: sum("REPORT RequestId" in line for line in emulator.reports()) == 2)
    # Speed is reported, not asserted (bench/RESULTS.md, "The Lambda runtime").
    print(f"\n{len(event['Records'])} records; first invoke over HTTP {first_s * 1000:.0f} ms")
    print("\n".join(emulator.reports()))


def test_the_package_applies_a_kinesis_event_in_the_lambda_runtime(
    emulator: Emulator, stack: Stack
) -> None:
    """The table's changes through Kinesis (shuffled, duplicated) in the RIE: the index matches."""
    # given the table's changes published to a Kinesis stream out of order, with duplicates
    run = uuid.uuid4().hex[:10]
    _write_items(stack, run)
    kinesis = aws_client("kinesis")
    name = f"syncer-rie-{run}"
    arn = create_kinesis_stream(kinesis, name, shard_count=1)
    try:
        bridge = TableToKinesisBridge(
            stack.streams,
            kinesis,
            stack.stream_arn,
            stack.table,
            name,
            "us-east-1",
            "MICROSECOND",
            Delivery(seed=4, shuffle=True, duplicate_share=0.2),
        )
        bridge.pump()
        pages = list(read_kinesis(kinesis, name))
        # when each page is invoked as Lambda's Kinesis event
        for shard_id, records in pages:
            response = emulator.invoke(lambda_kinesis_event(records, arn, shard_id))
            # then nothing fails, and the index equals the table
            assert response == {"batchItemFailures": []}, emulator.log.read_text()[-3000:]
        assert stack.indexed() == stack.scanned()
    finally:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
