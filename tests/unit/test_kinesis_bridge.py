"""The Kinesis bridge's pure parts, and the hand-built Kinesis events, match DynamoDB's format."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

import pytest

from tests.helpers import load_event
from tests.kinesis_bridge import (
    MAX_PARTITION_KEY_CHARS,
    TTL_IDENTITY,
    Delivery,
    creation_time,
    encode,
    epoch_us,
    kinesis_payload,
    lambda_kinesis_event,
    partition_key,
    payload_problems,
    plan_delivery,
)

# The hand-built Kinesis events whose every record is valid, and the one built to be refused.
VALID_KINESIS_EVENT_FILES = [
    "kinesis_insert_modify_remove.json",
    "kinesis_microsecond.json",
    "kinesis_precision_switch.json",
    "kinesis_ttl_remove.json",
    "kinesis_out_of_order.json",
]
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/catalog-changes"
# A GetRecords record of the emulator's DynamoDB stream, as boto3 returns it.
STREAM_RECORD: dict[str, Any] = {
    "eventID": "5d7f9b1c3e5a7c9e1b3d5f7a9c1e3b5d",
    "eventName": "MODIFY",
    "eventVersion": "1.0",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "ApproximateCreationDateTime": dt.datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC),
        "Keys": {"pk": {"S": "p-1"}, "sk": {"S": "v1"}},
        "NewImage": {"pk": {"S": "p-1"}, "sk": {"S": "v1"}, "blob": {"B": b"\x00\xff"}},
        "OldImage": {"pk": {"S": "p-1"}, "sk": {"S": "v1"}},
        "SequenceNumber": "1100000000017454423009",
        "SizeBytes": 77,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    },
}


def decoded_payloads(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON DynamoDB wrote, from each record of a Lambda Kinesis event."""
    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]


def test_epoch_us_is_exact_for_microseconds() -> None:
    """A datetime converts to epoch microseconds without float rounding."""
    moment = dt.datetime(2286, 11, 20, 17, 46, 39, 999999, tzinfo=dt.UTC)
    assert epoch_us(moment) == 9_999_999_999_999_999


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("MILLISECOND", 1704067200123), ("MICROSECOND", 1704067200123456)],
)
def test_creation_time_in_the_precision_of_the_destination(precision: Any, expected: int) -> None:
    """ApproximateCreationDateTime is an integer in ms or us, truncated from the change time."""
    assert creation_time(1704067200123456, precision) == expected


def test_creation_time_refuses_an_unknown_precision() -> None:
    """A precision that DynamoDB does not offer is an error, not a silent default."""
    with pytest.raises(ValueError, match="precision"):
        creation_time(1, "SECOND")  # type: ignore[arg-type]


def test_partition_key_is_the_items_key_and_stable() -> None:
    """Equal keys give equal partition keys whatever the attribute order."""
    a = partition_key({"pk": {"S": "p-1"}, "sk": {"S": "v1"}})
    b = partition_key({"sk": {"S": "v1"}, "pk": {"S": "p-1"}})
    assert a == b == '{"pk":{"S":"p-1"},"sk":{"S":"v1"}}'


def test_a_long_key_is_hashed_into_kinesis_limit() -> None:
    """A key longer than Kinesis allows still gives a valid, stable partition key."""
    keys = {"pk": {"S": "x" * 1000}}
    assert len(partition_key(keys)) <= MAX_PARTITION_KEY_CHARS
    assert partition_key(keys) == partition_key(dict(keys))


def test_payload_has_exactly_the_fields_dynamodb_writes() -> None:
    """A converted record carries the Kinesis fields, no SequenceNumber or StreamViewType."""
    payload = kinesis_payload(STREAM_RECORD, "catalog", "eu-west-1", "MILLISECOND")
    assert payload_problems(payload) == []
    assert payload["tableName"] == "catalog"
    assert payload["awsRegion"] == "eu-west-1"
    assert payload["userIdentity"] is None
    assert payload["dynamodb"]["ApproximateCreationDateTime"] == 1704067200123
    assert payload["dynamodb"]["NewImage"]["blob"] == {"B": "AP8="}
    assert "SequenceNumber" not in payload["dynamodb"]
    assert "StreamViewType" not in payload["dynamodb"]


def test_payload_at_microsecond_precision() -> None:
    """At MICROSECOND precision the time keeps the change's microseconds."""
    payload = kinesis_payload(STREAM_RECORD, "catalog", "us-east-1", "MICROSECOND")
    assert payload["dynamodb"]["ApproximateCreationDateTime"] == 1704067200123456
    assert payload_problems(payload) == []


def test_payload_marks_a_ttl_delete() -> None:
    """A record named as a TTL delete carries DynamoDB's service identity."""
    payload = kinesis_payload(STREAM_RECORD, "catalog", "us-east-1", "MILLISECOND", True)
    assert payload["userIdentity"] == TTL_IDENTITY


def test_payload_event_id_is_stable_per_change() -> None:
    """The same stream record gives the same event ID (a duplicate carries it too)."""
    first = kinesis_payload(STREAM_RECORD, "catalog", "us-east-1", "MILLISECOND")
    again = kinesis_payload(STREAM_RECORD, "catalog", "us-east-1", "MICROSECOND")
    assert first["eventID"] == again["eventID"]


def test_payload_problems_names_what_is_wrong() -> None:
    """A DynamoDB Streams record and a time in seconds are not the Kinesis format."""
    problems = payload_problems({**STREAM_RECORD, "dynamodb": {"Keys": {"pk": {"S": "a"}}}})
    assert "missing tableName" in problems
    assert "unexpected eventVersion" in problems
    assert any("ApproximateCreationDateTime" in p for p in problems)


def test_default_delivery_keeps_stream_order_once() -> None:
    """Without shuffle or duplicates every payload is published once, in order."""
    payloads = [{"n": i} for i in range(20)]
    assert plan_delivery(payloads, Delivery()) == [(p, False) for p in payloads]


@pytest.mark.parametrize("seed", range(20))
def test_disordered_delivery_keeps_every_payload_and_copies_come_later(seed: int) -> None:
    """Shuffled, duplicated delivery loses nothing and puts each copy after its original."""
    payloads = [{"n": i} for i in range(30)]
    order = plan_delivery(payloads, Delivery(seed=seed, shuffle=True, duplicate_share=0.3))
    assert {id(p) for p, dup in order if not dup} == {id(p) for p in payloads}
    assert len([p for p, dup in order if not dup]) == len(payloads)
    for position, (payload, duplicate) in enumerate(order):
        if duplicate:
            original = next(i for i, (p, d) in enumerate(order) if p is payload and not d)
            assert original < position


def test_disordered_delivery_is_reproducible_from_its_seed() -> None:
    """The same seed gives the same schedule, so a failing test replays."""
    payloads = [{"n": i} for i in range(30)]
    delivery = Delivery(seed=7, shuffle=True, duplicate_share=0.5)
    first = [(p["n"], d) for p, d in plan_delivery(payloads, delivery)]
    again = [(p["n"], d) for p, d in plan_delivery(payloads, delivery)]
    assert first == again
    assert [n for n, d in first if not d] != list(range(30))


def test_duplicate_share_outside_0_to_1_is_refused() -> None:
    """A share of duplicates that is not a fraction is an error."""
    with pytest.raises(ValueError, match="duplicate_share"):
        Delivery(duplicate_share=1.5)


def test_lambda_event_from_getrecords_records() -> None:
    """GetRecords records become Lambda's Kinesis event records, data base64 of the bytes."""
    payload = kinesis_payload(STREAM_RECORD, "catalog", "us-east-1", "MILLISECOND")
    arrival = dt.datetime(2024, 1, 1, 0, 0, 1, 500000, tzinfo=dt.UTC)
    records = [
        {
            "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "ApproximateArrivalTimestamp": arrival,
            "Data": encode(payload),
            "PartitionKey": partition_key(payload["dynamodb"]["Keys"]),
        }
    ]
    event = lambda_kinesis_event(records, KINESIS_ARN, "shardId-000000000006")
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["eventSourceARN"] == KINESIS_ARN
    assert record["awsRegion"] == "us-east-1"
    assert record["eventID"] == (
        "shardId-000000000006:49590338271490256608559692538361571095921575989136588898"
    )
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert record["kinesis"]["approximateArrivalTimestamp"] == 1704067201.5
    assert decoded_payloads(event) == [payload]


@pytest.mark.parametrize("name", VALID_KINESIS_EVENT_FILES)
def test_hand_built_kinesis_events_are_in_the_real_format(name: str) -> None:
    """Every record of the valid Kinesis event files is a Lambda Kinesis record of a change."""
    event = load_event(name)
    for record, payload in zip(event["Records"], decoded_payloads(event), strict=True):
        assert record["eventSource"] == "aws:kinesis"
        assert record["eventID"] == f"shardId-000000000000:{record['kinesis']['sequenceNumber']}"
        assert len(record["kinesis"]["sequenceNumber"]) == 56
        assert record["kinesis"]["partitionKey"] == partition_key(payload["dynamodb"]["Keys"])
        assert payload_problems(payload) == []


def test_kinesis_event_files_cover_both_precisions_ttl_and_disorder() -> None:
    """The files hold ms and us times, a TTL delete, a REMOVE before its INSERT, equal times."""
    payloads = [p for name in VALID_KINESIS_EVENT_FILES for p in decoded_payloads(load_event(name))]
    times = [p["dynamodb"]["ApproximateCreationDateTime"] for p in payloads]
    assert any(t < 10**13 for t in times)
    assert any(t >= 10**15 for t in times)
    assert any(p["userIdentity"] == TTL_IDENTITY for p in payloads)
    out_of_order = decoded_payloads(load_event("kinesis_out_of_order.json"))
    assert [p["eventName"] for p in out_of_order[:2]] == ["REMOVE", "INSERT"]
    assert out_of_order[2] == out_of_order[3]
    assert (
        out_of_order[4]["dynamodb"]["ApproximateCreationDateTime"]
        == out_of_order[5]["dynamodb"]["ApproximateCreationDateTime"]
    )


def test_poison_file_has_one_bad_record_of_each_kind_between_good_ones() -> None:
    """The poison file's first and last records are valid; each one between is refused."""
    records = load_event("kinesis_poison.json")["Records"]
    verdicts = []
    for record in records:
        try:
            raw = base64.b64decode(record["kinesis"]["data"], validate=True)
        except binascii.Error:
            verdicts.append("not base64")
            continue
        try:
            payload = json.loads(raw)
        except ValueError:
            verdicts.append("not JSON")
            continue
        problems = payload_problems(payload)
        if problems:
            verdicts.append("not the format")
        elif payload["tableName"] != "catalog":
            verdicts.append("unknown table")
        else:
            verdicts.append("valid")
    assert verdicts == [
        "valid",
        "not base64",
        "not JSON",
        "not the format",
        "unknown table",
        "not the format",
        "not the format",
        "valid",
    ]
