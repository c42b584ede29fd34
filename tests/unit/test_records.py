"""Lambda DynamoDB Streams events decode to ChangeRecord values, or to clear rejections."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from decimal import Decimal

import pytest

from syncer.core.records import (
    LATEST_CREATION_S,
    MAX_DOCUMENT_ID_BYTES,
    EventName,
    check_event,
    decode_record,
    decode_records,
    document_id,
    padded_sequence,
    table_from_arn,
)
from syncer.errors import InvalidEventError
from tests.helpers import VALID_EVENT_FILES


@pytest.mark.parametrize("name", VALID_EVENT_FILES)
def test_valid_event_file_decodes_without_rejections(load_event, name: str) -> None:
    """Every record of a well-formed event file decodes, none is rejected."""
    # given a well-formed event file
    records = check_event(load_event(name))
    # when its records are decoded
    decoded, rejected = decode_records(records)
    # then all decode, in order, with the stream's sequence numbers
    assert rejected == []
    assert [r.sequence_text for r in decoded] == [r["dynamodb"]["SequenceNumber"] for r in records]


def test_insert_modify_remove_decodes_names_images_and_table(load_event) -> None:
    """INSERT, MODIFY and REMOVE records carry the right images, keys and table."""
    # given the NEW_AND_OLD_IMAGES event
    event = load_event("insert_modify_remove.json")
    # when it is decoded
    insert, modify, remove, _ = decode_records(check_event(event))[0]
    # then each record has the images its event name implies
    assert [insert.event_name, modify.event_name, remove.event_name] == [
        EventName.INSERT,
        EventName.MODIFY,
        EventName.REMOVE,
    ]
    assert insert.table == "catalog"
    assert insert.keys == {"pk": "p-100", "sk": "v1"}
    assert insert.old_image is None
    assert modify.old_image is not None
    assert modify.new_image is not None
    assert (modify.old_image["category"], modify.new_image["category"]) == ("shoes", "boots")
    assert remove.new_image is None
    assert remove.old_image is not None
    assert remove.old_image["category"] == "boots"


def test_sequence_number_is_an_exact_integer(load_event) -> None:
    """A 40-digit sequence number decodes to the exact integer, its text kept as sent."""
    # given the OLD_IMAGE event, whose sequence numbers have 40 digits
    raw = load_event("old_image.json")["Records"][0]
    # when it is decoded
    record = decode_record(raw)
    # then the integer and the text agree digit for digit
    assert record.sequence_number == 5000000000000000000000000000000000000001
    assert record.sequence_text == "5000000000000000000000000000000000000001"


def test_creation_time_is_epoch_seconds(load_event) -> None:
    """ApproximateCreationDateTime as a whole-second number decodes to epoch seconds."""
    # given a record created at a whole second
    raw = load_event("insert_modify_remove.json")["Records"][0]
    # when it is decoded
    record = decode_record(raw)
    # then the time is those seconds
    assert record.approximate_creation_s == 1704067200


def test_creation_time_in_milliseconds_is_scaled_to_seconds(load_event) -> None:
    """A creation time in milliseconds (as via Kinesis) is turned into seconds."""
    # given a record whose creation time is in milliseconds
    raw = copy.deepcopy(load_event("insert_modify_remove.json")["Records"][0])
    raw["dynamodb"]["ApproximateCreationDateTime"] = 1704067200123
    # when it is decoded
    record = decode_record(raw)
    # then the time is in seconds
    assert record.approximate_creation_s == pytest.approx(1704067200.123)


def test_ttl_remove_is_recognised(load_event) -> None:
    """A REMOVE by the DynamoDB service principal is a TTL delete."""
    # given the TTL event's first record
    raw = load_event("ttl_remove.json")["Records"][0]
    # when it is decoded
    record = decode_record(raw)
    # then it is a TTL delete
    assert record.is_remove
    assert record.is_ttl_delete


def test_user_remove_is_not_a_ttl_delete(load_event) -> None:
    """A REMOVE without the service identity is an ordinary delete."""
    # given the TTL event's second record, deleted by a user
    raw = load_event("ttl_remove.json")["Records"][1]
    # when it is decoded
    record = decode_record(raw)
    # then it is not a TTL delete
    assert record.is_remove
    assert not record.is_ttl_delete


def test_service_identity_on_modify_is_not_a_ttl_delete(load_event) -> None:
    """Only a REMOVE can be a TTL delete, whatever userIdentity says."""
    # given a MODIFY record carrying the TTL service identity
    raw = copy.deepcopy(load_event("insert_modify_remove.json")["Records"][1])
    raw["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    # when it is decoded
    record = decode_record(raw)
    # then it is not a TTL delete
    assert not record.is_ttl_delete


@pytest.mark.parametrize(
    ("name", "view_type", "images", "lookups"),
    [
        ("keys_only.json", "KEYS_ONLY", [(False, False)] * 3, [True, True, False]),
        (
            "new_image.json",
            "NEW_IMAGE",
            [(True, False), (True, False), (False, False)],
            [False, False, False],
        ),
        (
            "old_image.json",
            "OLD_IMAGE",
            [(False, False), (False, True), (False, True)],
            [True, True, False],
        ),
        (
            "insert_modify_remove.json",
            "NEW_AND_OLD_IMAGES",
            [(True, False), (True, True), (False, True), (True, False)],
            [False, False, False, False],
        ),
    ],
)
def test_view_type_decides_images_and_table_lookups(
    load_event, name: str, view_type: str, images: list[tuple[bool, bool]], lookups: list[bool]
) -> None:
    """Each view type yields the images it carries, and a table read only where the new image is missing."""
    # given an event of one stream view type
    event = load_event(name)
    # when it is decoded
    decoded, _ = decode_records(check_event(event))
    # then view type, images and lookups match what that view type carries
    assert {r.view_type for r in decoded} == {view_type}
    assert [(r.new_image is not None, r.old_image is not None) for r in decoded] == images
    assert [r.needs_item_lookup for r in decoded] == lookups


def test_separator_keys_get_distinct_document_ids(load_event) -> None:
    """Keys that differ only in where a separator, backslash or '#' sits get distinct ids."""
    # given keys such as ("a|b", "c") and ("a", "b|c")
    event = load_event("separator_keys.json")
    # when they are decoded
    decoded, _ = decode_records(check_event(event))
    # then every key has its own document id
    ids = [r.document_id for r in decoded]
    assert len(set(ids)) == len(ids) == 8


def test_separator_in_key_is_escaped_in_document_id() -> None:
    """A '|' inside a key value is escaped, so ids of ("a|b","c") and ("a","b|c") differ visibly."""
    # given two keys that would join to the same text unescaped
    # when their ids are built
    first = document_id({"pk": "a|b", "sk": "c"})
    second = document_id({"pk": "a", "sk": "b|c"})
    # then the separator inside a value is escaped
    assert (first, second) == ("a\\|b|c", "a|b\\|c")


def test_document_id_does_not_depend_on_key_order() -> None:
    """The id is built in key-name order, so the order of Keys in the record does not matter."""
    # given the same key with its attributes in two orders
    # when the ids are built
    # then they are equal
    assert document_id({"sk": "v1", "pk": "p-1"}) == document_id({"pk": "p-1", "sk": "v1"})


def test_number_keys_form_a_document_id() -> None:
    """Number key values, however large, spell their digits in the id."""
    # given a numeric partition key of 38 digits
    key = {"id": 12345678901234567890123456789012345678}
    # when its id is built
    # then it is the digits
    assert document_id(key) == "12345678901234567890123456789012345678"


def test_long_key_id_fits_in_512_bytes(load_event) -> None:
    """A key longer than 512 UTF-8 bytes gets a hashed id within OpenSearch's limit."""
    # given the 600-byte (200-character) key of the separator event
    raw = load_event("separator_keys.json")["Records"][-1]
    # when it is decoded
    record = decode_record(raw)
    # then its id is a '#'-prefixed hash within 512 bytes
    assert len(record.keys["pk"].encode()) > MAX_DOCUMENT_ID_BYTES
    assert len(record.document_id.encode()) <= MAX_DOCUMENT_ID_BYTES
    assert record.document_id.startswith("#")


def test_id_of_exactly_512_bytes_is_kept_plain() -> None:
    """An id of exactly 512 bytes is used as is; one byte more switches to the hash."""
    # given keys whose plain ids are 512 and 513 bytes
    at_limit = {"pk": "x" * 510, "sk": "y"}
    over_limit = {"pk": "x" * 511, "sk": "y"}
    # when their ids are built
    # then the first stays plain and the second is hashed
    assert document_id(at_limit) == "x" * 510 + "|y"
    plain_over = ("x" * 511 + "|y").encode()
    assert document_id(over_limit) == "#" + hashlib.sha256(plain_over).hexdigest()


def test_plain_id_never_looks_like_a_hashed_id() -> None:
    """A key that starts with '#' has its '#' escaped, so it can never equal a hashed id."""
    # given a key value that looks like a hashed id
    fake = "#" + hashlib.sha256(b"whatever").hexdigest()
    # when its id is built
    built = document_id({"pk": fake})
    # then it is escaped
    assert built == "\\" + fake


@pytest.mark.parametrize(
    ("arn", "table"),
    [
        (
            "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000",
            "catalog",
        ),
        (
            "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/orders.v2/stream/2024-02-01T10:00:00.123",
            "orders.v2",
        ),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/Users", "Users"),
        ("arn:aws:kinesis:us-east-1:123456789012:stream/catalog", None),
        ("not an arn", None),
        (None, None),
    ],
)
def test_event_source_arn_names_the_table(arn: object, table: str | None) -> None:
    """The table name comes from the stream (or table) ARN; anything else gives None."""
    # given an eventSourceARN
    # when the table is read from it
    # then it is the table name, or None
    assert table_from_arn(arn) == table


def test_padded_sequence_makes_text_order_numeric() -> None:
    """Padded sequence numbers sort as text in the same order as the integers."""
    # given a 21-digit number of nines and a larger 22-digit number
    smaller, larger = int("9" * 21), 10**21
    # when they are padded
    # then text order equals numeric order
    assert padded_sequence(smaller) < padded_sequence(larger)
    assert len(padded_sequence(larger)) == 40


@pytest.mark.parametrize(
    "event",
    [{}, {"records": []}, {"Records": {}}, [], None, "Records"],
    ids=["empty", "lowercase-records", "records-not-list", "list", "none", "string"],
)
def test_check_event_rejects_what_is_not_a_batch(event: object) -> None:
    """An event without a Records list is refused whole."""
    # given something that is not a DynamoDB Streams batch
    # when it is checked
    # then it is an invalid event
    with pytest.raises(InvalidEventError):
        check_event(event)


def test_check_event_rejects_records_from_other_sources(load_event) -> None:
    """An SQS event is refused with a message naming the wrong source."""
    # given an event from another event source
    event = load_event("other_sources.json")["sqs"]
    # when it is checked
    # then the error names that source
    with pytest.raises(InvalidEventError, match="aws:sqs"):
        check_event(event)


def test_check_event_accepts_a_kinesis_batch(load_event) -> None:
    """A Kinesis event (a table streamed to Kinesis Data Streams) is a batch syncer handles."""
    # given a Kinesis event
    event = load_event("kinesis_insert_modify_remove.json")
    # when it is checked
    # then its records come back
    assert check_event(event) == event["Records"]


def test_check_event_refuses_a_batch_mixing_streams_and_kinesis(load_event) -> None:
    """A DynamoDB Streams record among Kinesis records makes the whole event invalid."""
    # given a Kinesis batch with a DynamoDB Streams record appended
    event = load_event("kinesis_insert_modify_remove.json")
    streams_record = load_event("insert_modify_remove.json")["Records"][0]
    mixed = {"Records": [*event["Records"], streams_record]}
    # when it is checked
    # then it is refused, naming both sources
    with pytest.raises(
        InvalidEventError, match="DynamoDB Streams record but record 0 is a Kinesis"
    ):
        check_event(mixed)


def test_check_event_rejects_a_batch_with_one_foreign_record(load_event) -> None:
    """One SQS record among DynamoDB records makes the whole event invalid."""
    # given a DynamoDB batch with an SQS record appended
    event = load_event("insert_modify_remove.json")
    event["Records"].append(load_event("other_sources.json")["sqs"]["Records"][0])
    # when it is checked
    # then nothing is accepted
    with pytest.raises(InvalidEventError, match=r"record 4 comes from 'aws:sqs'"):
        check_event(event)


def test_check_event_accepts_an_empty_batch() -> None:
    """An event with an empty Records list is a valid, empty batch."""
    # given an empty batch
    # when it is checked
    records = check_event({"Records": []})
    # then there is nothing to do
    assert records == []


MALFORMED_REASONS = {
    1: r"unknown attribute type 'X' at NewImage\.weight",
    2: r"unparsable number at NewImage\.price",
    3: r"no key attributes",
    4: r"SequenceNumber",
    5: r"binary at NewImage\.thumbnail is not base64",
    6: r"unknown eventName 'UPSERT'",
}


def test_malformed_batch_keeps_good_records(load_event) -> None:
    """Good records of a mixed batch decode, in order, despite the bad ones among them."""
    # given the malformed batch
    records = check_event(load_event("malformed.json"))
    # when it is decoded
    decoded, _ = decode_records(records)
    # then the good records (including the one with a string creation time) survive
    assert [r.keys["pk"] for r in decoded] == ["good-1", "string-time", "good-2"]


@pytest.mark.parametrize(("position", "reason"), sorted(MALFORMED_REASONS.items()))
def test_malformed_record_is_rejected_with_a_clear_reason(
    load_event, position: int, reason: str
) -> None:
    """Each bad record becomes a RejectedRecord whose error says what is wrong."""
    # given the malformed batch
    records = check_event(load_event("malformed.json"))
    # when it is decoded
    _, rejected = decode_records(records)
    # then the bad record is rejected for its reason, and only once
    matching = [r for r in rejected if r.raw is records[position]]
    assert len(matching) == 1
    assert re.search(reason, str(matching[0].error))


def test_rejection_keeps_table_and_sequence_for_the_dead_letter(load_event) -> None:
    """A rejected record still names its table and sequence number when the record has them."""
    # given the malformed batch
    records = check_event(load_event("malformed.json"))
    # when it is decoded
    _, rejected = decode_records(records)
    # then rejections carry table and sequence, except where the sequence is missing
    assert len(rejected) == len(MALFORMED_REASONS)
    assert {r.table for r in rejected} == {"catalog"}
    by_position = {records.index(r.raw): r.sequence_text for r in rejected}
    assert by_position[1] == "800000000000000000000000000020"
    assert by_position[4] is None


def test_string_creation_time_is_accepted(load_event) -> None:
    """ApproximateCreationDateTime given as a string such as "1678831218.0" is read as seconds."""
    # given the malformed batch's record with a string creation time
    raw = load_event("malformed.json")["Records"][7]
    # when it is decoded
    record = decode_record(raw)
    # then the time is the number the string spells
    assert record.approximate_creation_s == 1678831218.0


UNREADABLE_TIMES = {
    "nan": float("nan"),
    "infinity": float("inf"),
    "minus-infinity": float("-inf"),
    "1e300": 1e300,
    "int-too-big-for-a-float": 10**400,
    "negative": -1,
    "negative-ms": -1704067200123,
    "after-year-9999-in-ms": 253402300800000,
    "decimal-nan": Decimal("NaN"),
    "string-not-a-number": "yesterday",
    "string-nan": "NaN",
    "string-infinity": "Infinity",
    "string-1e400": "1e400",
    "string-with-spaces": " 1678831218 ",
    "string-with-underscores": "1_678_831_218",
    "boolean": True,
    "list": [1678831218],
}


@pytest.mark.parametrize("when", UNREADABLE_TIMES.values(), ids=UNREADABLE_TIMES.keys())
def test_a_record_with_an_unreadable_time_is_rejected_alone(load_event, when: object) -> None:
    """A NaN, infinite, out-of-range or non-numeric creation time rejects that record only."""
    # given a batch of two records, the second with an unreadable ApproximateCreationDateTime
    good, other = copy.deepcopy(load_event("insert_modify_remove.json")["Records"][:2])
    other["dynamodb"]["ApproximateCreationDateTime"] = when
    # when the batch is decoded
    decoded, rejected = decode_records([good, other])
    # then the good record decodes and the other is rejected, naming the field
    assert [r.sequence_text for r in decoded] == [good["dynamodb"]["SequenceNumber"]]
    (rejection,) = rejected
    assert rejection.raw is other
    assert rejection.sequence_text == other["dynamodb"]["SequenceNumber"]
    assert "ApproximateCreationDateTime" in str(rejection.error)


@pytest.mark.parametrize(
    ("when", "seconds"),
    [
        (0, 0.0),
        (1678831218, 1678831218.0),
        ("1678831218.0", 1678831218.0),
        ("1678831218", 1678831218.0),
        (Decimal("1678831218.5"), 1678831218.5),
        (1704067200123, 1704067200.123),  # milliseconds, as via Kinesis
        (10**11, 1e11),  # the largest number read as seconds (year 5138)
        (LATEST_CREATION_S * 1000, float(LATEST_CREATION_S)),  # the last millisecond-second
    ],
)
def test_readable_times_decode_to_epoch_seconds(load_event, when: object, seconds: float) -> None:
    """Numbers, decimal strings and milliseconds within range decode to epoch seconds."""
    raw = copy.deepcopy(load_event("insert_modify_remove.json")["Records"][0])
    raw["dynamodb"]["ApproximateCreationDateTime"] = when
    assert decode_record(raw).approximate_creation_s == pytest.approx(seconds)


def test_record_without_a_table_arn_is_rejected(load_event) -> None:
    """A record whose eventSourceARN names no table is rejected, since no table config applies."""
    # given a record without eventSourceARN (as GetRecords returns it)
    raw = copy.deepcopy(load_event("insert_modify_remove.json")["Records"][0])
    del raw["eventSourceARN"]
    # when the batch is decoded
    decoded, rejected = decode_records([raw])
    # then the record is rejected for the ARN
    assert decoded == []
    assert "eventSourceARN" in str(rejected[0].error)


def test_a_decoder_bug_is_raised_not_dead_lettered(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the decoder did not mean to raise fails the batch (issue 11, case 8).

    On the old code a KeyError or TypeError from the decoder became a dead letter, and the
    record was acknowledged although syncer, not the record, was at fault.
    """

    # given a decoder with a bug
    def broken(*_: object, **__: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr("syncer.core.records.decode_item", broken)
    record = {
        "eventName": "INSERT",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/catalog/stream/2024-01-01T00:00:00.000",
        "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1"},
    }
    # when a record is decoded, then the bug propagates
    with pytest.raises(TypeError, match="a bug"):
        decode_records([record])


KINESIS_EVENT_FILES = [
    "kinesis_insert_modify_remove.json",
    "kinesis_microsecond.json",
    "kinesis_out_of_order.json",
    "kinesis_precision_switch.json",
    "kinesis_ttl_remove.json",
]


@pytest.mark.parametrize("name", VALID_EVENT_FILES + KINESIS_EVENT_FILES)
def test_the_version_decoded_once_is_the_one_the_record_computes(load_event, name: str) -> None:
    """The decoder stores each record's version; it is what the record itself would compute."""
    # given the records of a well-formed event file, decoded
    decoded, _ = decode_records(check_event(load_event(name)))
    for record in decoded:
        # when the version is asked of the record, and of the same record without it stored
        computed = dataclasses.replace(record, decoded_version=None).version
        # then both are the same version
        assert record.decoded_version is not None
        assert record.version == computed
