"""The Kinesis bridge on the emulator: every table change reaches Kinesis in DynamoDB's format."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from syncer.demo import create_catalog_table
from syncer.runner.streams import table_stream_arn
from syncer.sinks.build import aws_client
from tests.integration.conftest import REPO_ROOT
from tests.integration.streamreader import stream_shards
from tests.kinesis_bridge import (
    TTL_IDENTITY,
    Delivery,
    Precision,
    TableToKinesisBridge,
    create_kinesis_stream,
    epoch_us,
    kinesis_payload,
    lambda_kinesis_event,
    partition_key,
    payload_problems,
    read_kinesis,
)

pytestmark = pytest.mark.integration
REGION = "us-east-1"


@dataclass
class Streamed:
    """A table with a DynamoDB stream and the Kinesis stream the bridge publishes it to."""

    dynamodb: Any
    streams: Any
    kinesis: Any
    table: str
    table_stream_arn: str
    kinesis_stream: str
    kinesis_arn: str

    def bridge(
        self, precision: Precision = "MILLISECOND", delivery: Delivery | None = None
    ) -> TableToKinesisBridge:
        return TableToKinesisBridge(
            self.streams,
            self.kinesis,
            self.table_stream_arn,
            self.table,
            self.kinesis_stream,
            REGION,
            precision,
            delivery or Delivery(),
        )

    def table_changes(self) -> list[dict[str, Any]]:
        """Every record of the table's DynamoDB stream, in stream order."""
        changes: list[dict[str, Any]] = []
        for shard in stream_shards(self.streams, self.table_stream_arn):
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.table_stream_arn,
                ShardId=shard["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            while iterator:
                response = self.streams.get_records(ShardIterator=iterator)
                if not response["Records"]:
                    break
                changes.extend(response["Records"])
                iterator = response.get("NextShardIterator")
        return changes

    def kinesis_records(self) -> list[tuple[str, dict[str, Any]]]:
        """(shard ID, GetRecords record) of everything in the Kinesis stream, shard by shard."""
        return [
            (shard, r)
            for shard, page in read_kinesis(self.kinesis, self.kinesis_stream)
            for r in page
        ]


@pytest.fixture
def streamed() -> Iterator[Streamed]:
    """A fresh table and a fresh two-shard Kinesis stream on the emulator, deleted afterwards."""
    name = f"kinesis-bridge-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    dynamodb, kinesis = aws_client("dynamodb"), aws_client("kinesis")
    create_catalog_table(dynamodb, name)
    _, stream_arn = table_stream_arn(dynamodb, name)
    kinesis_arn = create_kinesis_stream(kinesis, name, shard_count=2)
    yield Streamed(
        dynamodb, aws_client("dynamodbstreams"), kinesis, name, stream_arn, name, kinesis_arn
    )
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    dynamodb.delete_table(TableName=name)


def random_workload(streamed: Streamed, seed: int, writes: int, keys: int) -> None:
    """Puts, updates and deletes of a few keys, so each key has several changes."""
    rng = random.Random(seed)
    for n in range(writes):
        key = {"pk": {"S": f"p-{rng.randrange(keys)}"}, "sk": {"S": "v1"}}
        if rng.random() < 0.2:
            streamed.dynamodb.delete_item(TableName=streamed.table, Key=key)
        else:
            item = {**key, "n": {"N": str(n)}, "blob": {"B": bytes([n % 256])}}
            streamed.dynamodb.put_item(TableName=streamed.table, Item=item)


def payload_of(record: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(record["Data"])
    return decoded


def test_every_change_arrives_in_dynamodbs_kinesis_format(streamed: Streamed) -> None:
    """Shuffled, duplicated publishing still delivers each change, in the real format, keyed."""
    # given a random workload on the table, bridged with shuffle and duplicates
    random_workload(streamed, seed=1, writes=60, keys=6)
    changes = streamed.table_changes()
    bridge = streamed.bridge(delivery=Delivery(seed=3, shuffle=True, duplicate_share=0.3))
    # when the bridge pumps and the Kinesis stream is read back
    published = bridge.pump()
    received = streamed.kinesis_records()
    # then every change arrived at least once, and only the published duplicates twice
    payloads = [payload_of(r) for _, r in received]
    assert all(payload_problems(p) == [] for p in payloads)
    counts = Counter(p["eventID"] for p in payloads)
    assert len(counts) == len(changes) > 40
    duplicates = sum(p.duplicate for p in published)
    assert sum(counts.values()) == len(published) == len(changes) + duplicates > len(changes)
    assert Counter(p.payload["eventID"] for p in published) == counts
    # and each payload names the table and region; its partition key is the item's key
    for shard, record in received:
        payload = payload_of(record)
        assert payload["tableName"] == streamed.table
        assert payload["awsRegion"] == REGION
        assert record["PartitionKey"] == partition_key(payload["dynamodb"]["Keys"])
        assert shard.startswith("shardId-")


def test_changes_match_the_table_stream_and_images(streamed: Streamed) -> None:
    """Each Kinesis payload carries its stream record's name, keys, images and time in ms."""
    # given puts, an update and a delete, bridged in order
    random_workload(streamed, seed=2, writes=12, keys=3)
    changes = streamed.table_changes()
    streamed.bridge().pump()
    # when read back from Kinesis
    payloads = [payload_of(r) for _, r in streamed.kinesis_records()]
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in payloads:
        by_key[partition_key(payload["dynamodb"]["Keys"])].append(payload)
    # then, item by item, the payloads follow the stream records one for one
    expected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        expected[partition_key(change["dynamodb"]["Keys"])].append(change)
    assert by_key.keys() == expected.keys()
    for key, stream_records in expected.items():
        for payload, change in zip(by_key[key], stream_records, strict=True):
            assert payload["eventName"] == change["eventName"]
            assert payload["dynamodb"]["Keys"] == change["dynamodb"]["Keys"]
            created = change["dynamodb"]["ApproximateCreationDateTime"]
            assert payload["dynamodb"]["ApproximateCreationDateTime"] == epoch_us(created) // 1000
            new_image = change["dynamodb"].get("NewImage")
            if new_image is not None:
                blob = base64.b64decode(payload["dynamodb"]["NewImage"]["blob"]["B"])
                assert blob == new_image["blob"]["B"]
            else:
                assert "NewImage" not in payload["dynamodb"]


def test_an_items_changes_share_one_shard(streamed: Streamed) -> None:
    """All records of one item land on one shard, so Kinesis keeps their publishing order."""
    random_workload(streamed, seed=4, writes=40, keys=8)
    streamed.bridge(delivery=Delivery(seed=5, shuffle=True)).pump()
    shards_of: dict[str, set[str]] = defaultdict(set)
    for shard, record in streamed.kinesis_records():
        shards_of[record["PartitionKey"]].add(shard)
    assert all(len(shards) == 1 for shards in shards_of.values())
    # and with 8 keys over 2 shards, both shards are used
    assert len({s for shards in shards_of.values() for s in shards}) == 2


def test_shuffled_publishing_puts_some_items_changes_out_of_order(streamed: Streamed) -> None:
    """With shuffle on, some item's changes reach Kinesis in another order than the table's."""
    # given an item with several changes, bridged with shuffle
    random_workload(streamed, seed=6, writes=30, keys=3)
    stream_ids = [
        kinesis_payload(c, streamed.table, REGION, "MILLISECOND")["eventID"]
        for c in streamed.table_changes()
    ]
    published = streamed.bridge(delivery=Delivery(seed=8, shuffle=True)).pump()
    # when read back
    received = [payload_of(r) for _, r in streamed.kinesis_records()]
    # then each shard returns its records in publishing order (Kinesis keeps it per shard)
    position = {p.payload["eventID"]: i for i, p in enumerate(published)}
    by_key: dict[str, list[str]] = defaultdict(list)
    for payload in received:
        by_key[partition_key(payload["dynamodb"]["Keys"])].append(payload["eventID"])
    for ids in by_key.values():
        assert ids == sorted(ids, key=position.__getitem__)
    # and for at least one item that order is not the order of the changes
    stream_position = {eid: i for i, eid in enumerate(stream_ids)}
    assert any(ids != sorted(ids, key=stream_position.__getitem__) for ids in by_key.values())


def test_pumps_publish_only_new_changes_at_the_current_precision(streamed: Streamed) -> None:
    """A second pump publishes only later changes; a precision change applies from then on."""
    # given a bridge that pumped the first changes at millisecond precision
    bridge = streamed.bridge()
    random_workload(streamed, seed=9, writes=5, keys=2)
    first = bridge.pump()
    # when the destination moves to microsecond precision and more changes are made
    bridge.precision = "MICROSECOND"
    random_workload(streamed, seed=10, writes=4, keys=2)
    second = bridge.pump()
    # then each change was published once, the later ones in microseconds
    assert (len(first), len(second)) == (5, 4)
    assert len({p.payload["eventID"] for p in [*first, *second]}) == 9
    assert all(p.payload["dynamodb"]["ApproximateCreationDateTime"] < 10**13 for p in first)
    assert all(p.payload["dynamodb"]["ApproximateCreationDateTime"] >= 10**15 for p in second)
    # and the microsecond times are later than the millisecond ones in one unit
    last_ms = max(p.payload["dynamodb"]["ApproximateCreationDateTime"] for p in first)
    first_us = min(p.payload["dynamodb"]["ApproximateCreationDateTime"] for p in second)
    assert first_us >= last_ms * 1000
    assert bridge.pump() == []


def test_lambda_kinesis_event_of_what_the_bridge_wrote(streamed: Streamed) -> None:
    """Records read back from Kinesis make a Lambda event whose data is the payload written."""
    random_workload(streamed, seed=11, writes=6, keys=2)
    published = streamed.bridge().pump()
    events = [
        lambda_kinesis_event(page, streamed.kinesis_arn, shard)
        for shard, page in read_kinesis(streamed.kinesis, streamed.kinesis_stream)
    ]
    records = [r for event in events for r in event["Records"]]
    assert len(records) == len(published)
    for record in records:
        assert record["eventSourceARN"] == streamed.kinesis_arn
        assert (
            record["eventID"]
            == f"{record['eventID'].split(':')[0]}:{record['kinesis']['sequenceNumber']}"
        )
        assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
        payload = json.loads(base64.b64decode(record["kinesis"]["data"]))
        assert payload_problems(payload) == []
    assert {json.loads(base64.b64decode(r["kinesis"]["data"]))["eventID"] for r in records} == {
        p.payload["eventID"] for p in published
    }


def test_a_change_named_as_a_ttl_delete_carries_dynamodbs_identity(streamed: Streamed) -> None:
    """The emulator makes no TTL deletes; the bridge marks the REMOVEs it is told to."""
    # given an item put and deleted, and the delete named as a TTL delete
    key = {"pk": {"S": "expiring"}, "sk": {"S": "v1"}}
    streamed.dynamodb.put_item(TableName=streamed.table, Item={**key, "ttl": {"N": "1"}})
    streamed.dynamodb.delete_item(TableName=streamed.table, Key=key)
    remove = next(c for c in streamed.table_changes() if c["eventName"] == "REMOVE")
    bridge = streamed.bridge()
    bridge.ttl_event_ids = frozenset({remove["eventID"]})
    # when bridged
    bridge.pump()
    # then only the REMOVE carries the service principal
    identities = {
        payload_of(r)["eventName"]: payload_of(r)["userIdentity"]
        for _, r in streamed.kinesis_records()
    }
    assert identities == {"INSERT": None, "REMOVE": TTL_IDENTITY}


def test_command_line_pumps_once(streamed: Streamed) -> None:
    """`python -m tests.kinesis_bridge` publishes the table's changes and says how many."""
    random_workload(streamed, seed=12, writes=5, keys=2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.kinesis_bridge",
            "--table",
            streamed.table,
            "--kinesis-stream",
            streamed.kinesis_stream,
            "--precision",
            "MICROSECOND",
            "--shuffle",
            "--duplicate-share",
            "1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"published 10 record(s) to {streamed.kinesis_stream} (5 duplicate(s), MICROSECOND)"
    )
    payloads = [payload_of(r) for _, r in streamed.kinesis_records()]
    assert len(payloads) == 10
    assert all(p["dynamodb"]["ApproximateCreationDateTime"] >= 10**15 for p in payloads)
