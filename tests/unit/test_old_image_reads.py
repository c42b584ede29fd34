"""Of an OldImage, syncer decodes and checks only what it reads: the old state's cache keys and
route. A bad value elsewhere in it harms nothing and rejects nothing; a bad value it reads is
poison with its reason, as before (docs/operations.md, "Poison records")."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from syncer.config import Config, TableConfig, parse_config
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.plan import old_image_fields, plan_cache_keys
from syncer.core.records import EventName, decode_record, decode_records
from syncer.errors import PoisonRecordError
from syncer.pipeline import process_batch
from tests.fakes import FakeCache, FakeLetters, FakeSearch, fake_sinks
from tests.unit.test_kinesis_records import lambda_record, payload

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"
SEQ = 300000000000000000000
BAD = {"X": "1"}  # a type DynamoDB does not have

CATALOG = """
[[tables]]
name = "catalog"
index = "catalog"
cache_keys = ["product:{pk}", "category:{category}"]
search_cache_keys = ["brand-page:{brand}"]
exclude_attributes = ["cost"]
"""

ROUTED = """
[[tables]]
name = "catalog"
index = "catalog"
cache_keys = ["product:{pk}"]

[[tables.routes]]
index = "boots"
match = { attribute = "kind", equals = "boot" }
cache_keys = ["boot:{pk}:{size}", "{tag:tenant}:boots"]
"""


def _config(text: str) -> Config:
    return parse_config(tomllib.loads(text), environ={})


def _table(text: str) -> TableConfig:
    (table,) = _config(text).tables
    return table


def _record(event: str, offset: int, old: dict[str, Any], new: dict[str, Any] | None = None) -> Any:
    keys = {"pk": {"S": "p-1"}, "sk": {"S": "v1"}}
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": 1704067200,
        "Keys": keys,
        "SequenceNumber": str(SEQ + offset),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "OldImage": {**keys, **old},
    }
    if new is not None:
        body["NewImage"] = {**keys, **new}
    return {
        "eventName": event,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": ARN,
        "dynamodb": body,
    }


@pytest.mark.parametrize(
    ("config", "fields"),
    [
        (CATALOG, ("brand", "category", "pk")),
        (ROUTED, ("kind", "pk", "size", "tenant")),
        ('[[tables]]\nname = "catalog"\nindex = "catalog"\n', ()),
    ],
    ids=["cache-and-search-keys", "routes-and-hash-tags", "no-cache-keys"],
)
def test_old_image_fields_are_what_the_cache_keys_and_routes_name(
    config: str, fields: tuple[str, ...]
) -> None:
    """The attributes read of an old state: route match attributes and every template's names."""
    # given a table, when its old-image fields are asked, then they are those its keys/routes name
    assert old_image_fields(_table(config)) == fields


NEW = {"category": {"S": "boots"}, "brand": {"S": "Kestrel"}}

# (config, bad OldImage attribute, reason the record is poison or None when it is accepted)
DECODE_CASES = [
    (CATALOG, {"cost": BAD}, None),
    (CATALOG, {"notes": {"N": "12abc"}}, None),
    (CATALOG, {"title": {"S": 5}}, None),
    (CATALOG, {"pk": BAD}, None),  # a key attribute: read from the Keys, never from the image
    (CATALOG, {"category": BAD}, "unknown attribute type 'X' at OldImage.category"),
    (CATALOG, {"category": {"N": "12abc"}}, "unparsable number at OldImage.category"),
    (CATALOG, {"brand": {"S": 5}}, "S at OldImage.brand has the wrong shape"),
    (ROUTED, {"category": BAD}, None),
    (ROUTED, {"kind": BAD}, "unknown attribute type 'X' at OldImage.kind"),
    (ROUTED, {"size": {"NULL": False}}, "NULL at OldImage.size must be true"),
    (ROUTED, {"tenant": {"M": "x"}}, "map at OldImage.tenant is not an object"),
]


@pytest.mark.parametrize(("config", "bad", "reason"), DECODE_CASES)
def test_a_bad_old_image_attribute_is_poison_only_when_syncer_reads_it(
    config: str, bad: dict[str, Any], reason: str | None
) -> None:
    """A MODIFY whose OldImage has a bad value is accepted unless a cache key or route reads it."""
    # given a MODIFY whose OldImage holds one bad value
    raw = _record("MODIFY", 1, {"category": {"S": "shoes"}, **bad}, NEW)
    fields = {"catalog": old_image_fields(_table(config))}
    # when it is decoded as process_batch decodes it
    decoded, rejected = decode_records([raw], fields)
    # then it is poison with its reason exactly when the value is one syncer reads
    if reason is None:
        assert rejected == []
        (change,) = decoded
        assert set(change.old_image or {}) <= set(fields["catalog"]) - {"pk", "sk"}
    else:
        assert decoded == []
        (refused,) = rejected
        assert reason in str(refused.error)
        assert refused.sequence_text == str(SEQ + 1)


@pytest.mark.parametrize(("config", "bad", "reason"), DECODE_CASES)
def test_a_remove_drops_its_old_image_only_for_a_bad_value_syncer_reads(
    config: str, bad: dict[str, Any], reason: str | None
) -> None:
    """A REMOVE keeps its old image unless a value syncer reads is bad (then it says why)."""
    # given a REMOVE whose OldImage holds one bad value
    raw = _record("REMOVE", 1, {"category": {"S": "shoes"}, **bad})
    # when it is decoded as process_batch decodes it
    record = decode_record(raw, {"catalog": old_image_fields(_table(config))})
    # then it is a REMOVE either way; the image is dropped, with why, only for a value read
    assert record.event_name is EventName.REMOVE
    if reason is None:
        assert record.image_error is None
        assert record.old_image is not None
    else:
        assert record.old_image is None
        assert record.image_error is not None
        assert reason in record.image_error


def test_an_old_image_that_is_not_a_map_is_still_poison() -> None:
    """Whatever syncer reads of it, an OldImage that is not an object is poison."""
    # given a MODIFY whose OldImage is a list
    raw = _record("MODIFY", 1, {}, NEW)
    raw["dynamodb"]["OldImage"] = ["category"]
    # when it is decoded as process_batch decodes it, then it is poison, saying so
    with pytest.raises(PoisonRecordError, match="map at OldImage is not an object"):
        decode_record(raw, {"catalog": old_image_fields(_table(CATALOG))})


def test_without_fields_the_whole_old_image_is_decoded() -> None:
    """Callers that pass no fields (a table not configured, the tools) get the whole image."""
    # given a MODIFY whose OldImage has an attribute no template names
    raw = _record("MODIFY", 1, {"notes": {"S": "n"}}, NEW)
    # when it is decoded without fields, and with fields for another table
    whole = decode_record(raw)
    other = decode_record(raw, {"reviews": ()})
    # then its old image is all of it
    assert whole.old_image == other.old_image == {"pk": "p-1", "sk": "v1", "notes": "n"}


@pytest.mark.parametrize("config", [CATALOG, ROUTED])
def test_the_cache_keys_of_a_read_old_image_are_those_of_the_whole_one(config: str) -> None:
    """Decoding only the fields read renders the same cache keys as decoding the whole image."""
    # given MODIFYs of every route whose OldImages hold many attributes
    table = _table(config)
    olds = [
        {"kind": {"S": kind}, "size": {"N": "42"}, "tenant": {"S": "acme"}, "notes": {"S": "n"}}
        | {"category": {"S": "shoes"}, "brand": {"S": "Tundra"}, "cost": {"N": "3.5"}}
        for kind in ("boot", "tent")
    ]
    raws = [_record("MODIFY", n, old, NEW) for n, old in enumerate(olds, start=1)]
    # when they are decoded whole and decoded as process_batch does
    whole, _ = decode_records(copy.deepcopy(raws))
    read, _ = decode_records(raws, {"catalog": old_image_fields(table)})
    # then every change renders the same cache keys
    for full, cut in zip(whole, read, strict=True):
        (full_change,) = coalesce_latest_per_key([full])
        (cut_change,) = coalesce_latest_per_key([cut])
        assert plan_cache_keys(cut_change, table) == plan_cache_keys(full_change, table)
        assert plan_cache_keys(cut_change, table)  # and there are some


def test_process_batch_applies_a_modify_whose_unread_old_attribute_is_bad() -> None:
    """Through process_batch: indexed, the old category's key cleared, nothing dead-lettered."""
    # given a MODIFY whose OldImage has a bad value no cache key reads
    search, cache, letters = FakeSearch(), FakeCache(), FakeLetters()
    search.create("catalog")
    raw = _record("MODIFY", 1, {"category": {"S": "shoes"}, "weird": BAD}, NEW)
    # when the batch runs on the fakes
    outcome = process_batch([raw], _config(CATALOG), fake_sinks(search, cache, letters=letters))
    # then it is applied like any other change
    assert (outcome.indexed, outcome.dead_lettered, outcome.failed_sequence_numbers) == (1, 0, ())
    assert search.document("catalog", "p-1|v1")["category"] == "boots"
    assert {"category:shoes", "category:boots", "product:p-1"} <= cache.invalidated[0]
    assert letters.letters == []


def test_process_batch_dead_letters_a_modify_whose_read_old_attribute_is_bad() -> None:
    """Through process_batch: a bad value a cache key reads is poison, with its reason."""
    # given a MODIFY whose OldImage's category (a cache key's attribute) is unreadable
    search, cache, letters = FakeSearch(), FakeCache(), FakeLetters()
    search.create("catalog")
    raw = _record("MODIFY", 1, {"category": BAD}, NEW)
    # when the batch runs on the fakes
    outcome = process_batch([raw], _config(CATALOG), fake_sinks(search, cache, letters=letters))
    # then nothing of it is applied, and the dead letter names the attribute
    assert (outcome.indexed, outcome.dead_lettered) == (0, 1)
    assert search.document("catalog", "p-1|v1") is None
    (letter,) = letters.letters
    assert letter.error_class == "PoisonRecordError"
    assert "unknown attribute type 'X' at OldImage.category" in letter.message


@pytest.mark.parametrize(
    ("bad", "reason"), [({"notes": BAD}, None), ({"category": BAD}, "OldImage.category")]
)
def test_a_kinesis_change_reads_of_its_old_image_what_its_table_reads(
    bad: dict[str, Any], reason: str | None
) -> None:
    """Through Kinesis the table is the change's tableName, and the same rule holds."""
    # given a Kinesis MODIFY of catalog whose OldImage holds one bad value
    change = payload()
    change["dynamodb"]["OldImage"].update(bad)
    # when it is decoded as process_batch decodes it
    decoded, rejected = decode_records(
        [lambda_record(change)], {"catalog": old_image_fields(_table(CATALOG))}
    )
    # then it is accepted unless the value is one syncer reads
    if reason is None:
        assert rejected == []
        assert decoded[0].old_image == {}
    else:
        assert decoded == []
        assert reason in str(rejected[0].error)
