"""Fixtures on the real services of scripts/services.sh: OpenSearch, Redis and moto's server.

A missing service fails the test with the command that starts it; it never skips.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from syncer import handler
from syncer.config import Config, load_config
from syncer.core.attributes import decode_item
from syncer.demo import create_catalog_table
from syncer.errors import BatchFailedError
from syncer.runner.streams import table_stream_arn
from syncer.sinks.build import aws_client, build_sinks
from syncer.sinks.indices import apply_setup, plan_setup
from syncer.sinks.ports import Sinks
from tests.integration.streamreader import read_stream

OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MOTO_URL = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
# The Redis Clusters of scripts/services.sh (3 primaries + 3 replicas; TLS: 3 primaries).
REDIS_CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000/0")
REDIS_CLUSTER_TLS_URL = os.environ.get("REDIS_CLUSTER_TLS_URL", "rediss://127.0.0.1:7100/0")
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO_ROOT / os.environ.get("SYNCER_SERVICES_DIR", ".services")
REDIS_CLUSTER_CA = SERVICES_DIR / "redis-cluster" / "tls" / "ca.pem"
# Runs a Redis test against a single node and against the cluster, so neither path rots.
BOTH_REDIS_TOPOLOGIES = pytest.mark.parametrize(
    "redis_url",
    [pytest.param(REDIS_URL, id="single-node"), pytest.param(REDIS_CLUSTER_URL, id="cluster")],
)
_ids = itertools.count(1)
# The client libraries' loggers, whose levels syncer's logging setup changes.
LIBRARY_LOGGERS = ("opensearch", "urllib3", "botocore", "boto3", "redis")


def _require(name: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return
    except OSError as error:
        pytest.fail(f"{name} is not reachable at {url} ({error}); start it: scripts/services.sh up")


@pytest.fixture(scope="session", autouse=True)
def services() -> None:
    """Every integration test needs all three services; check once, fail loudly."""
    _require("OpenSearch", OPENSEARCH_URL)
    _require("Redis", REDIS_URL)
    _require("moto server", MOTO_URL)
    os.environ.setdefault("AWS_ENDPOINT_URL", MOTO_URL)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def write_config(
    path: Path, table: str, index: str, redis_url: str = REDIS_URL, **overrides: Any
) -> Path:
    """A syncer.toml for one table; ``overrides`` replace whole sections as TOML text."""
    sections = {
        "opensearch": f'[opensearch]\nurl = "{OPENSEARCH_URL}"\n',
        "redis": f'[redis]\nurl = "{redis_url}"\n',
        "deadletter": f'[deadletter]\nfile = "{path.parent / "deadletter.jsonl"}"\n',
        "resilience": "[resilience]\nmax_attempts = 3\ninitial_backoff_s = 0.01\nmax_backoff_s = 0.05\n"
        "max_retry_time_s = 2.0\nbreaker_fail_max = 50\nbreaker_reset_timeout_s = 1.0\n",
    }
    sections.update(overrides)
    table_section = (
        f'[[tables]]\nname = "{table}"\nindex = "{index}"\n'
        'cache_keys = ["product:{pk}", "product:{pk}:{sk}", "category:{category}"]\n'
        'exclude_attributes = ["cost"]\n'
    )
    path.write_text("\n".join([*sections.values(), table_section]))
    return path


@dataclass
class Stack:
    """One test's table, stream, index alias and config on the real services."""

    config_path: Path
    config: Config
    sinks: Sinks
    dynamodb: Any
    streams: Any
    table: str
    index: str
    stream_arn: str
    delivered: set[str] = field(default_factory=set)
    failed_invocations: int = 0

    def stream_records(self) -> list[dict[str, Any]]:
        """All records in the stream so far, in Lambda's shape."""
        region = self.dynamodb.meta.region_name
        return [r for page in read_stream(self.streams, self.stream_arn, region) for r in page]

    def new_records(self) -> list[dict[str, Any]]:
        """Records not delivered yet by ``deliver``."""
        return [
            r
            for r in self.stream_records()
            if r["dynamodb"]["SequenceNumber"] not in self.delivered
        ]

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Call the real Lambda handler with ``records`` as one event.

        When the handler fails the invocation because every record failed, Lambda retries the
        whole batch: the response returned then lists every record, as if each were reported.
        """
        try:
            response = handler.lambda_handler({"Records": records}, None)
        except BatchFailedError:
            self.failed_invocations += 1
            response = {
                "batchItemFailures": [
                    {"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in records
                ]
            }
        for record in records:
            self.delivered.add(record["dynamodb"]["SequenceNumber"])
        return response

    def deliver(self, batch_size: int = 100) -> list[dict[str, Any]]:
        """Deliver new stream records through lambda_handler; return the responses."""
        records = self.new_records()
        responses = []
        for start in range(0, len(records), batch_size):
            responses.append(self.invoke(records[start : start + batch_size]))
        return responses

    def indexed(self) -> dict[str, dict[str, Any]]:
        """Live documents as search sees them through the alias, by id, without ``_syncer``."""
        client = self.sinks.opensearch
        client.indices.refresh(index=self.index)
        response = client.search(index=self.index, body={"query": {"match_all": {}}, "size": 10000})
        return {
            hit["_id"]: {k: v for k, v in hit["_source"].items() if k != "_syncer"}
            for hit in response["hits"]["hits"]
        }

    def scanned(self) -> dict[str, dict[str, Any]]:
        """The table's items as the index should hold them (excluded attributes removed)."""
        from syncer.core import jsoncodec
        from syncer.core.records import document_id

        items: dict[str, dict[str, Any]] = {}
        paginator = self.dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table, ConsistentRead=True):
            for raw in page["Items"]:
                item = decode_item(raw)
                keys = {name: item[name] for name in ("pk", "sk") if name in item}
                body = {
                    k: v
                    for k, v in item.items()
                    if k not in self.config.tables[0].exclude_attributes
                }
                # stdlib json, like opensearch-py: orjson would turn big integers into floats
                items[document_id(keys)] = json.loads(jsoncodec.dumps(body))
        return items

    def put(self, item: dict[str, Any]) -> None:
        self.dynamodb.put_item(TableName=self.table, Item=item)

    def delete(self, pk: str, sk: str) -> None:
        self.dynamodb.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})


def syncer_run_command(config_path: Path, checkpoint_file: Path, metrics_port: int) -> list[str]:
    """`syncer run` as a subprocess: JSON logs, a short idle sleep, metrics on ``metrics_port``."""
    return [
        str(Path(sys.executable).parent / "syncer"),
        "--log-format",
        "json",
        "run",
        "--config",
        str(config_path),
        "--checkpoint-file",
        str(checkpoint_file),
        "--idle-sleep-s",
        "0.2",
        "--metrics-port",
        str(metrics_port),
    ]


def free_port() -> int:
    """A loopback port nothing listens on (for "down" services and for test servers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def view_type() -> str:
    return "NEW_AND_OLD_IMAGES"


@pytest.fixture
def direct() -> Iterator[redis.Redis]:
    """A client straight to the real single-node Redis, to look at and clean up what a test left."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def redis_url() -> str:
    """The Redis a stack uses; BOTH_REDIS_TOPOLOGIES runs a test on the single node and the cluster."""
    return REDIS_URL


@pytest.fixture
def stack(
    tmp_path: Path, view_type: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """A fresh table with a stream, its index behind an alias, and lambda_handler wired to them."""
    if redis_url != REDIS_URL:
        _require("Redis Cluster (scripts/services.sh cluster-up)", redis_url)
    suffix = f"{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:6]}"
    table = f"catalog-{suffix}"
    index = f"catalog-it-{suffix}"
    config_path = write_config(tmp_path / "syncer.toml", table, index, redis_url)
    monkeypatch.setenv("SYNCER_CONFIG", str(config_path))
    # The file carries the URLs; env overrides would defeat tests that re-point them at proxies.
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    handler.reset_container()
    config = load_config(str(config_path))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    create_catalog_table(dynamodb, table, view_type)
    for table_config in config.tables:
        apply_setup(sinks.opensearch, table_config, plan_setup(sinks.opensearch, table_config))
    _, stream_arn = table_stream_arn(dynamodb, table)
    yield Stack(
        config_path,
        config,
        sinks,
        dynamodb,
        aws_client("dynamodbstreams"),
        table,
        index,
        stream_arn,
    )
    handler.reset_container()
    # the table's rebuild job, if a test made one (its own record: the id is the table's name)
    sinks.opensearch.delete(index="syncer-jobs", id=table, params={"ignore": 404})
    dynamodb.delete_table(TableName=table)
    sinks.opensearch.indices.delete(index=f"{index}-*")
    sinks.opensearch.indices.delete_index_template(name=f"syncer-{index}")


def wait_until(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger; its handlers and level, and the client libraries' levels, restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    yield root
    for added in list(root.handlers):
        root.removeHandler(added)
    for original in handlers:
        root.addHandler(original)
    root.setLevel(level)
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)


def use_deadletter_queue(stack: Stack, queue_url: str) -> None:
    """Point the stack's config at ``queue_url`` for dead letters and rebuild the handler."""
    deadletter = f'[deadletter]\nsqs_queue_url = "{queue_url}"\n'
    write_config(stack.config_path, stack.table, stack.index, deadletter=deadletter)
    handler.reset_container()


@pytest.fixture
def sqs() -> Any:
    """An SQS client on the emulator."""
    return aws_client("sqs")


@pytest.fixture
def queue_url(stack: Stack, sqs: Any) -> Iterator[str]:
    """A fresh queue that the stack's dead letters go to."""
    url: str = sqs.create_queue(QueueName=f"syncer-dlq-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    use_deadletter_queue(stack, url)
    yield url
    sqs.delete_queue(QueueUrl=url)
