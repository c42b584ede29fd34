"""Test bridge: a table's changes on the emulator's DynamoDB stream, republished to Kinesis.

moto 5.2.6 has Kinesis, but its DynamoDB has no Kinesis streaming destination
(EnableKinesisStreamingDestination answers HTTP 500 and nothing forwards table changes), so
tests and demos that need "a table streamed to Kinesis" run this bridge instead. It writes each
change as DynamoDB does (REFERENCE.md, "Kinesis Data Streams for DynamoDB"): the JSON below as
the record's data, the item's key as its partition key, ``ApproximateCreationDateTime`` as an
integer in milliseconds or microseconds. AWS documents that this source may deliver an item's
changes out of order and more than once, so the bridge can shuffle and duplicate (seeded).

The shipped package never imports this module: it is a test tool, like the emulator itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from syncer.runner.kinesisrecords import from_get_records
from syncer.runner.streams import ordered_shards, to_lambda_record
from tests.integration.streamreader import stream_shards

Precision = Literal["MILLISECOND", "MICROSECOND"]
PRECISIONS: tuple[Precision, ...] = ("MILLISECOND", "MICROSECOND")
# The service principal that DynamoDB names on a TTL delete (REFERENCE.md).
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
# Kinesis limits: a partition key is 1 to 256 Unicode characters; PutRecords takes 500 entries.
MAX_PARTITION_KEY_CHARS = 256
PUT_RECORDS_MAX_ENTRIES = 500
PUT_RECORDS_ATTEMPTS = 5
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EVENT_ID_NAMESPACE = uuid.UUID("6f1c3a52-0d7e-4b8e-9a41-3c2f5e7d9b10")


class BridgeError(RuntimeError):
    """The bridge could not publish a change (Kinesis refused it after every attempt)."""


@dataclass(frozen=True)
class Delivery:
    """How the bridge disorders what it publishes, as AWS may: seeded, so a failure replays.

    ``shuffle`` publishes each pump's changes in a random order (per item too, which is the
    point); ``duplicate_share`` (0 to 1) is the share of changes published a second time, at a
    random later position. The defaults publish every change once, in stream order.
    """

    seed: int = 0
    shuffle: bool = False
    duplicate_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.duplicate_share <= 1.0:
            raise ValueError(f"duplicate_share must be within 0..1, got {self.duplicate_share}")


@dataclass(frozen=True)
class Published:
    """One Kinesis record the bridge wrote: the payload, where it landed, and whether a copy."""

    payload: Mapping[str, Any]
    partition_key: str
    shard_id: str
    sequence_number: str
    duplicate: bool


def epoch_us(moment: dt.datetime) -> int:
    """A datetime as integer epoch microseconds, without a float on the way (exact)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def creation_time(moment_us: int, precision: Precision) -> int:
    """``ApproximateCreationDateTime`` as Kinesis carries it: epoch ms or us, an integer."""
    if precision == "MICROSECOND":
        return moment_us
    if precision == "MILLISECOND":
        return moment_us // 1000
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def partition_key(keys: Mapping[str, Any]) -> str:
    """The item's key as a Kinesis partition key: all changes of an item land on one shard.

    The key attributes in DynamoDB JSON, sorted; a key longer than Kinesis allows is hashed
    (equal keys still give equal partition keys, which is all that routing needs).
    """
    text = json.dumps(keys, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) <= MAX_PARTITION_KEY_CHARS:
        return text
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kinesis_payload(
    stream_record: Mapping[str, Any],
    table: str,
    region: str,
    precision: Precision,
    ttl_delete: bool = False,
) -> dict[str, Any]:
    """The JSON DynamoDB writes to Kinesis for one DynamoDB Streams GetRecords record.

    ``stream_record`` is as boto3 returns it (``ApproximateCreationDateTime`` a datetime, B
    values bytes). No ``SequenceNumber`` and no ``StreamViewType`` inside, as on AWS; the event
    ID is a UUID derived from the stream's, so a duplicate carries the same one.
    """
    change = stream_record["dynamodb"]
    moment = change["ApproximateCreationDateTime"]
    moment_us = epoch_us(moment) if isinstance(moment, dt.datetime) else round(moment * 1e6)
    shaped = to_lambda_record(stream_record, "", region)["dynamodb"]
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": creation_time(moment_us, precision),
        "Keys": shaped["Keys"],
    }
    for image in ("NewImage", "OldImage"):
        if image in shaped:
            dynamodb[image] = shaped[image]
    dynamodb["SizeBytes"] = shaped.get("SizeBytes", 0)
    identity = stream_record.get("userIdentity")
    if ttl_delete:
        identity = dict(TTL_IDENTITY)
    return {
        "awsRegion": region,
        "eventID": str(uuid.uuid5(_EVENT_ID_NAMESPACE, stream_record["eventID"])),
        "eventName": stream_record["eventName"],
        "userIdentity": identity,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": dynamodb,
        "eventSource": "aws:dynamodb",
    }


_PAYLOAD_FIELDS = (
    "awsRegion",
    "eventID",
    "eventName",
    "userIdentity",
    "recordFormat",
    "tableName",
    "dynamodb",
    "eventSource",
)
# Epoch values of 2001..2286 in each unit: the magnitudes never overlap, which is how a reader
# can tell the unit of every record (ms values have 13 digits, us values 16).
CREATION_TIME_RANGES = {
    "MILLISECOND": (10**12, 10**13),
    "MICROSECOND": (10**15, 10**16),
}


def payload_problems(payload: Mapping[str, Any]) -> list[str]:
    """What in ``payload`` differs from the format DynamoDB writes to Kinesis (empty: none)."""
    problems = [f"missing {name}" for name in _PAYLOAD_FIELDS if name not in payload]
    problems += [f"unexpected {name}" for name in payload if name not in _PAYLOAD_FIELDS]
    if payload.get("eventName") not in ("INSERT", "MODIFY", "REMOVE"):
        problems.append(f"eventName {payload.get('eventName')!r}")
    if payload.get("userIdentity") not in (None, TTL_IDENTITY):
        problems.append(f"userIdentity {payload.get('userIdentity')!r}")
    if payload.get("recordFormat") != "application/json":
        problems.append(f"recordFormat {payload.get('recordFormat')!r}")
    if payload.get("eventSource") != "aws:dynamodb":
        problems.append(f"eventSource {payload.get('eventSource')!r}")
    change = payload.get("dynamodb")
    if not isinstance(change, Mapping):
        return [*problems, "dynamodb is not an object"]
    allowed = {"ApproximateCreationDateTime", "Keys", "NewImage", "OldImage", "SizeBytes"}
    problems += [f"unexpected dynamodb.{name}" for name in change if name not in allowed]
    moment = change.get("ApproximateCreationDateTime")
    if not isinstance(moment, int) or not any(
        low <= moment < high for low, high in CREATION_TIME_RANGES.values()
    ):
        problems.append(f"ApproximateCreationDateTime {moment!r} is not epoch ms or us")
    if not isinstance(change.get("Keys"), Mapping) or not change["Keys"]:
        problems.append("dynamodb.Keys missing or empty")
    if not isinstance(change.get("SizeBytes"), int):
        problems.append("dynamodb.SizeBytes is not an integer")
    return problems


def plan_delivery(
    payloads: Sequence[Mapping[str, Any]], delivery: Delivery
) -> list[tuple[Mapping[str, Any], bool]]:
    """The order in which to publish ``payloads``: (payload, is_a_duplicate) pairs.

    Every payload appears at least once; a duplicate always comes after its original.
    """
    rng = random.Random(delivery.seed)
    order: list[tuple[Mapping[str, Any], bool]] = [(p, False) for p in payloads]
    if delivery.shuffle:
        rng.shuffle(order)
    for payload in list(payloads):
        if rng.random() < delivery.duplicate_share:
            original = next(i for i, (p, dup) in enumerate(order) if p is payload and not dup)
            order.insert(rng.randint(original + 1, len(order)), (payload, True))
    return order


def encode(payload: Mapping[str, Any]) -> bytes:
    """A payload as the bytes of a Kinesis record's data."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def put_all(
    kinesis: Any, stream_name: str, entries: Sequence[tuple[bytes, str]]
) -> list[tuple[str, str]]:
    """PutRecords every (data, partition key), retrying refused entries; (shard, seq) of each.

    A refused entry is sent again after the accepted ones, as a real producer's retry would.
    """
    placed: list[tuple[str, str] | None] = [None] * len(entries)
    for start in range(0, len(entries), PUT_RECORDS_MAX_ENTRIES):
        pending = list(range(start, min(start + PUT_RECORDS_MAX_ENTRIES, len(entries))))
        for attempt in range(PUT_RECORDS_ATTEMPTS):
            response = kinesis.put_records(
                StreamName=stream_name,
                Records=[{"Data": entries[i][0], "PartitionKey": entries[i][1]} for i in pending],
            )
            refused = []
            for i, result in zip(pending, response["Records"], strict=True):
                if "ErrorCode" in result:
                    refused.append((i, result["ErrorCode"]))
                else:
                    placed[i] = (result["ShardId"], result["SequenceNumber"])
            if not refused:
                break
            pending = [i for i, _ in refused]
            if attempt == PUT_RECORDS_ATTEMPTS - 1:
                codes = sorted({code for _, code in refused})
                raise BridgeError(
                    f"Kinesis refused {len(refused)} record(s) of {stream_name!r} "
                    f"{PUT_RECORDS_ATTEMPTS} times: {', '.join(codes)}"
                )
            time.sleep(0.05 * 2**attempt)
    return [p for p in placed if p is not None]


@dataclass
class TableToKinesisBridge:
    """Follows a table's DynamoDB stream and republishes each change to a Kinesis stream.

    Call ``pump()`` after writing to the table: it publishes every change not published yet
    (disordered per ``delivery``, at the current ``precision``) and returns what it wrote.
    Changing ``precision`` between pumps is what UpdateKinesisStreamingDestination does on AWS.
    ``ttl_event_ids`` names stream records (by their eventID) to mark as TTL deletes, which
    the emulator never makes itself.
    """

    streams: Any
    kinesis: Any
    table_stream_arn: str
    table: str
    kinesis_stream: str
    region: str
    precision: Precision = "MILLISECOND"
    delivery: Delivery = field(default_factory=Delivery)
    ttl_event_ids: frozenset[str] = frozenset()
    _iterators: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    _pumps: int = field(default=0, init=False, repr=False)

    def pump(self) -> list[Published]:
        """Publish the changes made since the last pump; what was written, in order."""
        payloads = [
            kinesis_payload(
                record,
                self.table,
                self.region,
                self.precision,
                ttl_delete=record["eventID"] in self.ttl_event_ids,
            )
            for record in self._new_stream_records()
        ]
        # A new seed per pump, derived from the configured one, so that pumps differ.
        delivery = Delivery(
            seed=self.delivery.seed * 1_000_003 + self._pumps,
            shuffle=self.delivery.shuffle,
            duplicate_share=self.delivery.duplicate_share,
        )
        self._pumps += 1
        order = plan_delivery(payloads, delivery)
        keys = [partition_key(payload["dynamodb"]["Keys"]) for payload, _ in order]
        placed = put_all(
            self.kinesis,
            self.kinesis_stream,
            [(encode(payload), key) for (payload, _), key in zip(order, keys, strict=True)],
        )
        return [
            Published(payload, key, shard, sequence, duplicate)
            for (payload, duplicate), key, (shard, sequence) in zip(
                order, keys, placed, strict=True
            )
        ]

    def _new_stream_records(self) -> Iterator[Mapping[str, Any]]:
        for shard in stream_shards(self.streams, self.table_stream_arn):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self.streams.get_shard_iterator(
                    StreamArn=self.table_stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType="TRIM_HORIZON",
                )["ShardIterator"]
            while self._iterators[shard_id]:
                response = self.streams.get_records(ShardIterator=self._iterators[shard_id])
                records = response.get("Records", [])
                # A closed shard ends with no NextShardIterator; an open one keeps its place.
                self._iterators[shard_id] = response.get("NextShardIterator")
                if not records:
                    break
                yield from records


def create_kinesis_stream(kinesis: Any, name: str, shard_count: int = 2) -> str:
    """Create a Kinesis stream, wait until it is active, and return its ARN."""
    kinesis.create_stream(StreamName=name, ShardCount=shard_count)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    return str(
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    )


def read_kinesis(
    kinesis: Any, stream_name: str, limit: int = 1000
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(shard ID, GetRecords page) for every record now in the stream, from TRIM_HORIZON."""
    shards: list[Mapping[str, Any]] = []
    token: dict[str, Any] = {"StreamName": stream_name}
    while True:
        response = kinesis.list_shards(**token)
        shards.extend(response["Shards"])
        if not response.get("NextToken"):
            break
        token = {"NextToken": response["NextToken"]}
    for shard in ordered_shards(shards):
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=limit)
            if not response["Records"]:
                break
            yield shard["ShardId"], response["Records"]
            iterator = response.get("NextShardIterator")


def lambda_kinesis_event(
    records: Sequence[Mapping[str, Any]], stream_arn: str, shard_id: str
) -> dict[str, Any]:
    """Kinesis GetRecords records of one shard as the event Lambda hands a function.

    Region and account come from ``stream_arn`` (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME).
    """
    account = stream_arn.split(":", 5)[4]
    event_records = []
    for record in records:
        shaped = from_get_records(record, stream_arn, shard_id)
        shaped["invokeIdentityArn"] = f"arn:aws:iam::{account}:role/syncer-test"
        event_records.append(shaped)
    return {"Records": event_records}


def _arguments(argv: Sequence[str] | None) -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tests.kinesis_bridge",
        description="Republish a table's emulator DynamoDB stream to a Kinesis stream, in the "
        "format of Kinesis Data Streams for DynamoDB (AWS_ENDPOINT_URL names the emulator).",
    )
    parser.add_argument("--table", required=True, help="the table whose stream is read")
    parser.add_argument("--kinesis-stream", required=True, help="the Kinesis stream written")
    parser.add_argument(
        "--create-stream", type=int, metavar="SHARDS", help="create the Kinesis stream first"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="MILLISECOND")
    parser.add_argument("--shuffle", action="store_true", help="publish each pump out of order")
    parser.add_argument("--duplicate-share", type=float, default=0.0, metavar="0..1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--follow", action="store_true", help="keep pumping until interrupted (default: once)"
    )
    parser.add_argument("--interval-s", type=float, default=1.0, help="pause between pumps")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: pump once, or follow the table until interrupted; a line per pump."""
    import boto3

    from syncer.runner.streams import table_stream_arn

    args = _arguments(argv)
    dynamodb, kinesis = boto3.client("dynamodb"), boto3.client("kinesis")
    if args.create_stream:
        create_kinesis_stream(kinesis, args.kinesis_stream, args.create_stream)
    _, stream_arn = table_stream_arn(dynamodb, args.table)
    bridge = TableToKinesisBridge(
        boto3.client("dynamodbstreams"),
        kinesis,
        stream_arn,
        args.table,
        args.kinesis_stream,
        dynamodb.meta.region_name,
        args.precision,
        Delivery(args.seed, args.shuffle, args.duplicate_share),
    )
    try:
        while True:
            published = bridge.pump()
            if published or not args.follow:
                copies = sum(p.duplicate for p in published)
                print(
                    f"published {len(published)} record(s) to {args.kinesis_stream} "
                    f"({copies} duplicate(s), {args.precision})",
                    flush=True,
                )
            if not args.follow:
                return 0
            time.sleep(args.interval_s)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
