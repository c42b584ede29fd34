"""Decoding Lambda Kinesis records of a table streamed to Kinesis Data Streams (issue 25)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from syncer.core.kinesis import (
    MICROSECOND_RANGE,
    MILLISECOND_RANGE,
    UNIT_THRESHOLD,
    creation_interval_us,
)
from syncer.core.records import EventName, decode_record, decode_records
from syncer.errors import PoisonRecordError
from tests.kinesis_bridge import TTL_IDENTITY, encode, epoch_us

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/catalog-changes"


def payload(
    event: str = "MODIFY",
    at: int = 1_704_067_200_123,
    event_id: str = "e-1",
    table: str = "catalog",
    **changes: Any,
) -> dict[str, Any]:
    """The JSON DynamoDB writes to Kinesis for one change of item (p-1, v1)."""
    keys = {"pk": {"S": "p-1"}, "sk": {"S": "v1"}}
    body: dict[str, Any] = {"ApproximateCreationDateTime": at, "Keys": keys, "SizeBytes": 40}
    if event != "REMOVE":
        body["NewImage"] = {**keys, "name": {"S": "new"}}
    body["OldImage"] = {**keys, "name": {"S": "old"}}
    value = {
        "awsRegion": "eu-west-3",
        "eventID": event_id,
        "eventName": event,
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": body,
        "eventSource": "aws:dynamodb",
    }
    value.update(changes)
    return value


def lambda_record(data: object, sequence: str = "4959" + "0" * 52) -> dict[str, Any]:
    """A Lambda Kinesis record whose data is ``data`` (a payload, or raw text as given)."""
    text = data if isinstance(data, str) else base64.b64encode(encode(data)).decode("ascii")  # type: ignore[arg-type]
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "p-1",
            "sequenceNumber": sequence,
            "data": text,
            "approximateArrivalTimestamp": 1704067200.5,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{sequence}",
        "eventName": "aws:kinesis:record",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN,
    }


def test_a_kinesis_change_decodes_like_a_new_and_old_images_stream_record() -> None:
    """The change inside the data becomes a ChangeRecord of its tableName, with both images."""
    # given a MODIFY streamed to Kinesis in another Region than syncer's
    raw = lambda_record(payload())
    # when it is decoded
    record = decode_record(raw)
    # then its table, images, keys and itemIdentifier come from the Kinesis record
    assert (record.table, record.event_name) == ("catalog", EventName.MODIFY)
    assert record.view_type == "NEW_AND_OLD_IMAGES"
    assert record.new_image == {"pk": "p-1", "sk": "v1", "name": "new"}
    assert record.old_image == {"pk": "p-1", "sk": "v1", "name": "old"}
    assert record.typed_keys == {"pk": {"S": "p-1"}, "sk": {"S": "v1"}}
    assert record.sequence_text == raw["kinesis"]["sequenceNumber"]
    assert record.document_id == "p-1|v1"
    assert not record.needs_item_lookup
    # and its version is the change's time, never the Kinesis sequence number
    version = record.version
    assert version.seq is None
    assert version.is_kinesis
    assert (version.change_from_us, version.change_to_us) == (
        1_704_067_200_123_000,
        1_704_067_200_123_999,
    )
    assert version.event_id == "e-1"
    assert record.approximate_creation_s == pytest.approx(1_704_067_200.123)


def test_a_ttl_delete_is_marked_from_user_identity() -> None:
    """A REMOVE whose userIdentity is DynamoDB's service principal is a TTL delete."""
    # given a REMOVE made by TTL, and one made by a user
    ttl = decode_record(lambda_record(payload("REMOVE", userIdentity=dict(TTL_IDENTITY))))
    user = decode_record(lambda_record(payload("REMOVE")))
    # then only the first is marked
    assert ttl.is_ttl_delete
    assert ttl.is_remove
    assert not user.is_ttl_delete


@pytest.mark.parametrize(
    ("raw", "interval"),
    [
        (1_704_067_200_123, (1_704_067_200_123_000, 1_704_067_200_123_999)),
        (1_704_067_200_123_456, (1_704_067_200_123_456, 1_704_067_200_123_456)),
        (1_704_067_200_123.0, (1_704_067_200_123_000, 1_704_067_200_123_999)),
        (MILLISECOND_RANGE[0], (10**15, 10**15 + 999)),
        (MICROSECOND_RANGE[1] - 1, (10**16 - 1, 10**16 - 1)),
    ],
    ids=["milliseconds", "microseconds", "integral-float", "first-ms", "last-us"],
)
def test_creation_time_units_are_told_apart_per_value(
    raw: float, interval: tuple[int, int]
) -> None:
    """A value below 10^14 is milliseconds (a whole millisecond), at or above microseconds."""
    assert creation_interval_us(raw) == interval


@pytest.mark.parametrize(
    "raw",
    [
        1_704_067_200,  # seconds, as DynamoDB Streams carries it
        MILLISECOND_RANGE[0] - 1,  # before 2001 in ms
        MILLISECOND_RANGE[1],  # after 2286 in ms
        UNIT_THRESHOLD,  # between the ranges
        MICROSECOND_RANGE[0] - 1,
        MICROSECOND_RANGE[1],  # after 2286 in us (or nanoseconds of 1970)
        1_704_067_200_123.5,
        float("nan"),
        float("inf"),
        "1704067200123",
        True,
        None,
        -1_704_067_200_123,
    ],
)
def test_an_implausible_creation_time_is_poison(raw: object) -> None:
    """Anything that is not a whole epoch ms or us of 2001..2286 cannot be ordered: poison."""
    with pytest.raises(PoisonRecordError, match="ApproximateCreationDateTime"):
        creation_interval_us(raw)


@pytest.mark.parametrize("year", [2001, 2026, 2100, 2286])
def test_the_unit_rule_holds_for_real_dates(year: int) -> None:
    """Every date of 2001-09-09..2286-11-20 in ms is below 10^14, in us at or above it."""
    # given the first and last microsecond of the year, clamped to the supported span
    first = max(epoch_us(dt.datetime(year, 1, 1, tzinfo=dt.UTC)), 10**15)
    last = min(epoch_us(dt.datetime(year, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)), 10**16 - 1)
    for moment_us in (first, last):
        ms = moment_us // 1000
        # then the ms value decodes to the millisecond holding the moment, the us value to it
        low, high = creation_interval_us(ms)
        assert low <= moment_us <= high
        assert high - low == 999
        assert creation_interval_us(moment_us) == (moment_us, moment_us)


POISON = {
    "not-base64": ("%%% not base64 %%%", "not base64"),
    "not-json": (base64.b64encode(b"this is not JSON {").decode(), "not JSON"),
    "json-not-object": (base64.b64encode(b"[1, 2]").decode(), "not a JSON object"),
    "streams-record": (
        {
            "eventID": "1",
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {"SequenceNumber": "1", "Keys": {"pk": {"S": "a"}}},
        },
        "not a change of Kinesis Data Streams for DynamoDB",
    ),
    "no-table": (payload(tableName=None), "no tableName"),
    "no-event-id": (payload(eventID=""), "no eventID"),
    "upsert": (payload(eventName="UPSERT"), "unknown eventName 'UPSERT'"),
    "seconds": (payload(at=1_704_067_200), "neither epoch milliseconds nor microseconds"),
    "no-time": (payload(at=None), "ApproximateCreationDateTime is not a number"),
    "no-dynamodb": (payload(dynamodb="x"), "no 'dynamodb' object"),
    "modify-without-new-image": (
        {**payload(), "dynamodb": {"ApproximateCreationDateTime": 1_704_067_200_123, "Keys": {}}},
        "without NewImage",
    ),
}


@pytest.mark.parametrize(("data", "reason"), POISON.values(), ids=POISON.keys())
def test_each_malformed_kinesis_record_is_rejected_alone_with_its_reason(
    data: object, reason: str
) -> None:
    """A bad record is rejected with why; the good records around it decode."""
    # given a bad record between two good ones
    good = [lambda_record(payload(event_id="a")), lambda_record(payload(event_id="b"))]
    bad = lambda_record(data, sequence="4959" + "7" * 52)
    # when the batch is decoded
    decoded, rejected = decode_records([good[0], bad, good[1]])
    # then only the bad one is rejected, with its reason and itemIdentifier
    assert [r.version.event_id for r in decoded] == ["a", "b"]
    assert len(rejected) == 1
    assert reason in str(rejected[0].error)
    assert rejected[0].sequence_text == "4959" + "7" * 52


def test_a_record_without_a_usable_sequence_number_is_rejected_without_one() -> None:
    """No itemIdentifier can name it: the rejection has none (its dead letter must be written)."""
    raw = lambda_record(payload())
    raw["kinesis"]["sequenceNumber"] = "12a"
    _, rejected = decode_records([raw])
    assert rejected[0].sequence_text is None
    assert "sequenceNumber" in str(rejected[0].error)


def test_the_poison_event_file_rejects_exactly_its_poison_records(load_event) -> None:
    """tests/events/kinesis_poison.json: the two valid INSERTs decode, the six others do not."""
    # given the hand-built poison batch
    records = load_event("kinesis_poison.json")["Records"]
    # when it is decoded
    decoded, rejected = decode_records(records)
    # then the valid records decode (the table `orders` is refused later, by configuration)
    assert sorted(r.document_id for r in decoded) == ["p-500|v1", "p-501|v1", "p-503|v1"]
    reasons = " / ".join(str(r.error) for r in rejected)
    for reason in ("not base64", "not JSON", "not a change of Kinesis", "neither epoch", "UPSERT"):
        assert reason in reasons
    assert len(rejected) == 5
    assert all(r.sequence_text is not None for r in rejected)


def test_the_table_of_a_rejected_record_is_named_when_its_data_can_be_read() -> None:
    """A dead letter of a readable record names its table."""
    _, rejected = decode_records([lambda_record(payload(eventName="UPSERT"))])
    assert rejected[0].table == "catalog"


def test_the_region_in_the_record_is_never_used() -> None:
    """A change from another Region decodes to the same record as one from syncer's Region."""
    here = decode_record(lambda_record(payload(awsRegion="us-east-1")))
    there = decode_record(lambda_record(payload(awsRegion="ap-south-1")))
    assert (here.table, here.keys, here.new_image) == (there.table, there.keys, there.new_image)


def test_data_is_json_the_bridge_wrote() -> None:
    """The decoder reads exactly what tests/kinesis_bridge.py encodes (a round trip)."""
    data = payload("INSERT", at=1_704_067_200_123_456)
    record = decode_record(lambda_record(json.loads(encode(data))))
    assert record.is_insert
    assert record.version.change_from_us == 1_704_067_200_123_456
