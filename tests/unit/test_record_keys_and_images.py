"""A key that cannot be a document id poisons its record alone; a REMOVE needs only its Keys."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.core.records import EventName, decode_record, decode_records, document_id
from syncer.errors import PoisonRecordError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"


def _raw(
    event_name: str, keys: dict[str, Any], sequence: str = "100", **images: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"Keys": keys, "SequenceNumber": sequence, **images}
    body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    return {"eventName": event_name, "eventSourceARN": ARN, "dynamodb": body}


EMPTY_KEYS = [
    ({"pk": {"S": ""}}, "pk"),
    ({"pk": {"B": ""}}, "pk"),
    ({"pk": {"S": "p-1"}, "sk": {"S": ""}}, "sk"),
    ({"pk": {"B": ""}, "sk": {"S": "v1"}}, "pk"),
]


@pytest.mark.parametrize(("keys", "named"), EMPTY_KEYS)
def test_empty_key_value_is_a_poison_record(keys: dict[str, Any], named: str) -> None:
    """An empty string or binary key value cannot be a document id: the record is poison, by name."""
    # given a record whose key has an empty value
    raw = _raw("INSERT", keys)
    # when it is decoded
    # then it is refused, naming the key attribute
    with pytest.raises(PoisonRecordError, match=rf"key attribute '{named}' is empty"):
        decode_record(raw)


def test_empty_key_rejects_only_its_record() -> None:
    """Next to a good record, the empty-key record is rejected alone, with its reason."""
    # given a batch with a good record and an empty-key record
    good = _raw("INSERT", {"pk": {"S": "p-1"}}, "100", NewImage={"pk": {"S": "p-1"}})
    bad = _raw("INSERT", {"pk": {"S": ""}}, "101", NewImage={"pk": {"S": ""}})
    # when the batch is decoded
    decoded, rejected = decode_records([good, bad])
    # then the good one is decoded and the bad one rejected with the reason
    assert [record.document_id for record in decoded] == ["p-1"]
    (refused,) = rejected
    assert refused.sequence_text == "101"
    assert "empty" in str(refused.error)


def test_a_binary_key_is_indexed_under_its_base64_text() -> None:
    """A non-empty binary key is not poison: its document id is the key's base64 text."""
    # given a record whose partition key is binary (base64 in Lambda's JSON) and sort key text
    keys = {"pk": {"B": "3q2+7w=="}, "sk": {"S": "v1"}}
    raw = _raw("INSERT", keys, NewImage={**keys, "name": {"S": "n"}})
    # when it is decoded
    decoded, rejected = decode_records([raw])
    # then it is accepted, with an id built from the base64 text as for any string key
    assert rejected == []
    (record,) = decoded
    assert record.document_id == "3q2+7w==|v1"


def test_document_id_refuses_an_empty_part() -> None:
    """document_id itself never returns an id built from an empty key value."""
    # given keys with an empty value, when an id is made, then it is refused
    with pytest.raises(PoisonRecordError, match="empty"):
        document_id({"pk": ""})


UNKNOWN = {"weird": {"X": "1"}}


@pytest.mark.parametrize("image", ["OldImage", "NewImage"])
def test_remove_with_an_undecodable_image_still_decodes_from_its_keys(image: str) -> None:
    """A REMOVE whose image holds an unknown type keeps its keys and says what was dropped."""
    # given a REMOVE whose image has an attribute type syncer does not know
    raw = _raw("REMOVE", {"pk": {"S": "p-1"}}, **{image: {"pk": {"S": "p-1"}, **UNKNOWN}})
    # when it is decoded
    record = decode_record(raw)
    # then it is a REMOVE of that key, without the image, and the reason is kept
    assert record.event_name is EventName.REMOVE
    assert record.document_id == "p-1"
    assert record.old_image is None
    assert record.new_image is None
    assert record.image_error is not None
    assert "unknown attribute type 'X'" in record.image_error
    assert record.view_type == "NEW_AND_OLD_IMAGES"


def test_remove_with_a_good_old_image_keeps_it() -> None:
    """A REMOVE with a decodable old image keeps it, and has no image error."""
    # given a REMOVE with a plain old image
    raw = _raw("REMOVE", {"pk": {"S": "p-1"}}, OldImage={"pk": {"S": "p-1"}, "c": {"S": "x"}})
    # when it is decoded
    record = decode_record(raw)
    # then the image is there
    assert record.old_image == {"pk": "p-1", "c": "x"}
    assert record.image_error is None


@pytest.mark.parametrize("event_name", ["INSERT", "MODIFY"])
def test_insert_or_modify_with_an_unknown_type_is_still_poison(event_name: str) -> None:
    """An INSERT or MODIFY with an unknown type still goes to the dead letters."""
    # given an INSERT/MODIFY whose new image has an unknown attribute type
    raw = _raw(event_name, {"pk": {"S": "p-1"}}, NewImage={"pk": {"S": "p-1"}, **UNKNOWN})
    # when it is decoded, then it is poison
    with pytest.raises(PoisonRecordError, match="unknown attribute type"):
        decode_record(raw)


def test_remove_with_an_unknown_type_in_its_keys_is_still_poison() -> None:
    """A REMOVE whose Keys cannot be decoded has nothing to delete by: it is poison."""
    # given a REMOVE whose key has an unknown type, when decoded, then it is poison
    with pytest.raises(PoisonRecordError, match="unknown attribute type"):
        decode_record(_raw("REMOVE", {"pk": {"X": "1"}}))
