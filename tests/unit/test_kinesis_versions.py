"""Rule 5 of docs/ordering.md: changes delivered through Kinesis, ordered by their time (issue 25)."""

from __future__ import annotations

import base64
import itertools
import json
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.config import Config, parse_config
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.documents import SYNCER_FIELD
from syncer.core.records import decode_records
from syncer.core.versions import (
    CLOCK_UNCERTAINTY_MS,
    Order,
    Version,
    change_version,
    compare,
    kinesis_change_version,
    read_version,
    version_from_meta,
)
from syncer.pipeline import process_batch
from tests.fakes import FakeItems, FakeSearch, fake_sinks
from tests.kinesis_bridge import encode

T = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in epoch microseconds
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2023-12-01T00:00:00.000"


def ms(at_ms: int, event_id: str = "e") -> Version:
    """A Kinesis change at millisecond precision (``at_ms`` after T)."""
    t = T // 1000 + at_ms
    return kinesis_change_version(t * 1000, t * 1000 + 999, event_id)


def us(at_us: int, event_id: str = "e") -> Version:
    """A Kinesis change at microsecond precision (``at_us`` after T)."""
    return kinesis_change_version(T + at_us, T + at_us, event_id)


def streams(second: int, seq: int = 100) -> Version:
    """A DynamoDB Streams change of whole second T + ``second``."""
    return change_version(seq, ARN, T / 1e6 + second)


def read(from_ms: int, to_ms: int) -> Version:
    return read_version((T / 1000 + from_ms) / 1000, (T / 1000 + to_ms) / 1000)


U = CLOCK_UNCERTAINTY_MS
CASES = [
    # two Kinesis changes: their intervals
    ("ms after ms", ms(5, "b"), ms(4, "a"), Order.NEWER),
    ("ms before ms", ms(4, "a"), ms(5, "b"), Order.OLDER),
    ("same ms, other eventID", ms(5, "b"), ms(5, "a"), Order.UNKNOWN),
    ("same ms, same eventID (duplicate)", ms(5, "a"), ms(5, "a"), Order.OLDER),
    ("us after us", us(251, "b"), us(250, "a"), Order.NEWER),
    ("us before us", us(250, "a"), us(251, "b"), Order.OLDER),
    ("same us, other eventID", us(250, "b"), us(250, "a"), Order.UNKNOWN),
    ("same us duplicate", us(250, "a"), us(250, "a"), Order.OLDER),
    ("us inside the ms it follows", us(5_250, "b"), ms(5, "a"), Order.UNKNOWN),
    ("ms holding an earlier us", ms(5, "b"), us(5_250, "a"), Order.UNKNOWN),
    ("us after the whole ms", us(6_000, "b"), ms(5, "a"), Order.NEWER),
    ("ms after a us", ms(6, "b"), us(5_999, "a"), Order.NEWER),
    ("us before the ms", us(4_999, "a"), ms(5, "b"), Order.OLDER),
    # against reads: the margin U, as rule 3
    ("long before a read", ms(0), read(1_000 + U, 1_000 + U + 50), Order.OLDER),
    ("within the margin before a read", ms(0), read(U, U + 50), Order.UNKNOWN),
    ("long after a read", ms(101 + U), read(0, 100), Order.NEWER),  # read_to is +1 ms
    ("within the margin after a read", ms(99 + U), read(0, 100), Order.UNKNOWN),
    ("a read long after the change", read(1_000 + U, 1_100 + U), us(0), Order.NEWER),
    ("a read long before the change", read(0, 100), us((101 + U) * 1000), Order.OLDER),
    # against a DynamoDB Streams change of the item (a source switch), with the margin
    ("kinesis after the streams second + margin", ms(1_000 + U + 1), streams(0), Order.NEWER),
    ("kinesis within the margin of the second", ms(1_000 + U - 1), streams(0), Order.UNKNOWN),
    ("kinesis inside the streams second", ms(500), streams(0), Order.UNKNOWN),
    ("kinesis before the second - margin", ms(-U - 1), streams(0), Order.OLDER),
    ("streams second after kinesis + margin", streams(3), us(999_999), Order.NEWER),
    ("streams second within the margin", streams(1), us(999_999), Order.UNKNOWN),
    ("streams second before kinesis", streams(0), ms(2_000 + U), Order.OLDER),
    # nothing there, or a scan from before versions
    ("over nothing", ms(0), None, Order.NEWER),
    ("over an unversioned scan", ms(0), Version(), Order.NEWER),
]


@pytest.mark.parametrize(("new", "old", "order"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_5_orders_kinesis_changes(new: Version, old: Version | None, order: Order) -> None:
    """compare() on Kinesis versions, as the table in docs/ordering.md says."""
    assert compare(new, old) is order


@pytest.mark.parametrize("version", [ms(5, "a"), us(250, "b")], ids=["ms", "us"])
def test_a_kinesis_version_survives_the_index(version: Version) -> None:
    """Written as _syncer fields and read back, a Kinesis version is the same version."""
    meta = version.to_meta()
    assert "seq" not in meta
    assert meta["changed_at"] == version.change_from_us // 1000
    assert version_from_meta(meta) == version


def test_streams_versions_are_unchanged_by_rule_5() -> None:
    """Two DynamoDB Streams changes still order by sequence number within one stream."""
    assert compare(streams(0, seq=200), streams(5, seq=100)) is Order.NEWER
    assert compare(streams(5, seq=100), streams(0, seq=200)) is Order.OLDER


# --- through the pipeline, on the in-memory fakes ---------------------------------------------

CONFIG_TEXT = """
[[tables]]
name = "catalog"
index = "catalog"
cache_keys = ["product:{pk}"]
"""


def _config() -> Config:
    return parse_config(tomllib.loads(CONFIG_TEXT), environ={})


def kinesis_record(
    event: str, at: int, event_id: str, sequence: int, price: int | None
) -> dict[str, Any]:
    """A Lambda Kinesis record of item (p-1, v1); ``at`` as ApproximateCreationDateTime."""
    keys = {"pk": {"S": "p-1"}, "sk": {"S": "v1"}}
    body: dict[str, Any] = {"ApproximateCreationDateTime": at, "Keys": keys, "SizeBytes": 30}
    if event != "REMOVE":
        body["NewImage"] = {**keys, "price": {"N": str(price)}}
    data = {
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "eventName": event,
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": "catalog",
        "dynamodb": body,
        "eventSource": "aws:dynamodb",
    }
    return {
        "kinesis": {
            "sequenceNumber": str(10**55 + sequence),
            "partitionKey": "p-1",
            "data": base64.b64encode(encode(data)).decode("ascii"),
            "approximateArrivalTimestamp": 1704067200.0,
        },
        "eventSource": "aws:kinesis",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/catalog-changes",
    }


def test_coalescing_orders_by_time_not_by_kinesis_sequence_number() -> None:
    """Kinesis delivers out of order: the newest change by time wins, whatever its position."""
    # given three changes of one item delivered newest first (lowest sequence number)
    records = [
        kinesis_record("MODIFY", T // 1000 + 3, "c", 1, 3),
        kinesis_record("MODIFY", T // 1000 + 1, "a", 2, 1),
        kinesis_record("MODIFY", T // 1000 + 2, "b", 3, 2),
    ]
    decoded, _ = decode_records(records)
    # when they are coalesced
    (change,) = coalesce_latest_per_key(decoded)
    # then the latest is the newest by time, and the order is certain
    assert change.latest.new_image == {"pk": "p-1", "sk": "v1", "price": 3}
    assert not change.uncertain


def test_two_changes_in_one_millisecond_are_uncertain_and_a_duplicate_is_not() -> None:
    """Equal times with different eventIDs cannot be ordered; the same eventID is a duplicate."""
    same_ms = [
        kinesis_record("MODIFY", T // 1000 + 7, "a", 1, 1),
        kinesis_record("MODIFY", T // 1000 + 7, "b", 2, 2),
    ]
    duplicate = [
        kinesis_record("MODIFY", T // 1000 + 7, "a", 1, 1),
        kinesis_record("MODIFY", T // 1000 + 7, "a", 2, 1),
    ]
    assert coalesce_latest_per_key(decode_records(same_ms)[0])[0].uncertain
    assert not coalesce_latest_per_key(decode_records(duplicate)[0])[0].uncertain


def _table_holds(items: FakeItems, price: int | None) -> None:
    items.tables["catalog"] = {}
    if price is not None:
        items.put(
            "catalog",
            {"pk": {"S": "p-1"}, "sk": {"S": "v1"}, "price": {"N": str(price)}},
            ["pk", "sk"],
        )


def test_equal_times_force_a_consistent_re_read_of_the_item() -> None:
    """Two MODIFYs in one millisecond: the item is read again and what is read is indexed."""
    # given a table whose item has price 2 after two changes in the same millisecond
    search, items = FakeSearch(), FakeItems()
    search.create("catalog")
    _table_holds(items, 2)
    records = [
        kinesis_record("MODIFY", T // 1000 + 7, "b", 1, 2),
        kinesis_record("MODIFY", T // 1000 + 7, "a", 2, 1),
    ]
    # when the batch runs
    outcome = process_batch(records, _config(), fake_sinks(search, items=items))
    # then the item was read and its state, with a read version, is indexed
    assert outcome.failed_sequence_numbers == ()
    document = search.document("catalog", "p-1|v1")
    assert document is not None
    assert document["price"] == 2
    assert "read_from" in document[SYNCER_FIELD]


# A history of one item: each change (INSERT/MODIFY with a price, or REMOVE) a strictly later
# microsecond than the one before, published at millisecond or microsecond precision.
_steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=1_500),  # us since the previous change
        st.sampled_from(["put", "remove"]),
        st.sampled_from(["MILLISECOND", "MICROSECOND"]),
    ),
    min_size=1,
    max_size=8,
)


def _history(steps: list[tuple[int, str, str]]) -> tuple[list[dict[str, Any]], int | None]:
    """The Kinesis records of a history, and the item's final price (None: deleted)."""
    records, at_us, exists, price = [], T, False, None
    for n, (gap, kind, precision) in enumerate(steps):
        at_us += gap
        at = at_us if precision == "MICROSECOND" else at_us // 1000
        if kind == "put":
            event, exists, price = ("MODIFY" if exists else "INSERT"), True, n
        else:
            event, exists, price = "REMOVE", False, None
        records.append(kinesis_record(event, at, f"e-{n}", n, price))
    return records, price


@settings(max_examples=150, deadline=None)
@given(steps=_steps, data=st.data())
def test_any_shuffle_and_duplication_of_a_history_converges_to_its_newest_state(
    steps: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    """Delivered in any order, in any batches, with duplicates, the index ends as the table."""
    # given a history, and the table holding its final state
    records, final = _history(steps)
    search, items = FakeSearch(), FakeItems()
    search.create("catalog")
    _table_holds(items, final)
    # when its records are delivered shuffled, duplicated and replayed, in batches
    delivered = data.draw(st.permutations(records)) + data.draw(
        st.lists(st.sampled_from(records), max_size=6)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    bounds = [0, *cuts, len(delivered)]
    # each batch on one of two containers, which keep the states they wrote (known states,
    # stale once the other wrote), or on a fresh one, which keeps none
    containers = [fake_sinks(search, items=items), fake_sinks(search, items=items)]
    for start, end in itertools.pairwise(bounds):
        if start < end:
            container = data.draw(st.sampled_from([0, 1, None]))
            sinks = fake_sinks(search, items=items) if container is None else containers[container]
            outcome = process_batch(delivered[start:end], _config(), sinks)
            assert outcome.failed_sequence_numbers == ()
    # then the index holds the table's state: the final price, or a tombstone (or nothing)
    document = search.document("catalog", "p-1|v1")
    if final is None:
        assert document is None or document[SYNCER_FIELD]["deleted"] is True
    else:
        assert document is not None
        assert not document[SYNCER_FIELD].get("deleted")
        assert document["price"] == final


def test_kinesis_dead_letters_are_redriven_with_their_own_fates() -> None:
    """Redrive feeds Kinesis records back through the decoder; each gets its own fate."""
    from syncer.commands.redrive import Fate, redrive_entries
    from tests.fakes import FakeLetters

    # given dead letters of a good Kinesis change, one of an unreadable one, and one OpenSearch
    # refuses with 429s until the batch gives up
    search, letters = FakeSearch(), FakeLetters()
    search.create("catalog")
    good = kinesis_record("MODIFY", T // 1000 + 1, "a", 1, 5)
    bad = kinesis_record("MODIFY", T // 1000 + 2, "b", 2, 6)
    bad["kinesis"]["data"] = "%%% not base64 %%%"
    entries = [{"record": good, "error": {}}, {"record": bad, "error": {}}]
    # when they are redriven
    fates = redrive_entries(entries, _config(), fake_sinks(search, letters=letters))
    # then the good one is indexed and the bad one dead-lettered again, by its Kinesis number
    assert fates == [Fate.REDRIVEN, Fate.REJECTED_AGAIN]
    document = search.document("catalog", "p-1|v1")
    assert document is not None
    assert document["price"] == 5
    assert [letter.sequence_text for letter in letters.letters] == [str(10**55 + 2)]


def test_a_sampled_kinesis_write_survives_its_consistency_check_message() -> None:
    """The consistency checker's SQS message carries a Kinesis version (no seq) and reads back."""
    from syncer.core.consistency import SampledWrite

    # given a key written from a Kinesis change, sampled for a check
    sample = SampledWrite("catalog", "catalog", "p-1|v1", {"pk": "p-1"}, us(250, "e"), "f", (), 1)
    # when it becomes a message and is read back
    # then it is the same sampled write
    assert SampledWrite.from_message(sample.to_message()) == sample


def test_the_written_key_of_a_kinesis_batch_carries_the_change_version() -> None:
    """What the consistency sampler picks from has the Kinesis change's version."""
    search = FakeSearch()
    search.create("catalog")
    record = kinesis_record("MODIFY", T // 1000 + 3, "c", 1, 3)
    outcome = process_batch([record], _config(), fake_sinks(search))
    (written,) = outcome.written
    assert written.version == ms(3, "c")


def test_a_kinesis_change_invalidates_the_cache_keys_of_both_images() -> None:
    """A MODIFY that moves an item between categories clears the old and the new category."""
    from tests.fakes import FakeCache

    # given a Kinesis MODIFY whose old image is in category shoes and new image in boots
    config = parse_config(
        tomllib.loads(
            CONFIG_TEXT.replace('["product:{pk}"]', '["product:{pk}", "cat:{category}"]')
        ),
        environ={},
    )
    record = kinesis_record("MODIFY", T // 1000 + 3, "c", 1, 3)
    data = json.loads(base64.b64decode(record["kinesis"]["data"]))
    data["dynamodb"]["NewImage"]["category"] = {"S": "boots"}
    data["dynamodb"]["OldImage"] = {**data["dynamodb"]["Keys"], "category": {"S": "shoes"}}
    record["kinesis"]["data"] = base64.b64encode(encode(data)).decode("ascii")
    search, cache = FakeSearch(), FakeCache()
    search.create("catalog")
    # when it is applied
    outcome = process_batch([record], config, fake_sinks(search, cache))
    # then the cache keys of both images are invalidated
    assert outcome.failed_sequence_numbers == ()
    assert cache.invalidated == [{"product:p-1", "cat:boots", "cat:shoes"}]


ROUTED_TEXT = """
[[tables]]
name = "catalog"

[[tables.routes]]
index = "boots"
match = { attribute = "category", equals = "boots" }
cache_keys = ["boot:{pk}"]

[[tables.routes]]
index = "others"
match = { attribute = "category", begins_with = "" }
cache_keys = ["other:{pk}"]
"""


def _with_category(record: dict[str, Any], category: str) -> dict[str, Any]:
    data = json.loads(base64.b64decode(record["kinesis"]["data"]))
    data["dynamodb"]["NewImage"]["category"] = {"S": category}
    record["kinesis"]["data"] = base64.b64encode(encode(data)).decode("ascii")
    return record


def test_a_move_between_routes_from_kinesis_out_of_order_ends_in_the_newest_route() -> None:
    """The newer change (category boots) arrives first; the older (others) then loses in both."""
    # given a routed table, and an item that moved from "others" to "boots"
    config = parse_config(tomllib.loads(ROUTED_TEXT), environ={})
    search = FakeSearch()
    search.create("boots")
    search.create("others")
    newer = _with_category(kinesis_record("MODIFY", T // 1000 + 9, "b", 1, 2), "boots")
    older = _with_category(kinesis_record("INSERT", T // 1000 + 4, "a", 2, 1), "shoes")
    # when the newer change is delivered before the older one, in separate batches
    for record in (newer, older):
        outcome = process_batch([record], config, fake_sinks(search))
        assert outcome.failed_sequence_numbers == ()
    # then the item is in "boots" and a tombstone stays in "others"
    boots = search.document("boots", "p-1|v1")
    others = search.document("others", "p-1|v1")
    assert boots is not None
    assert boots["category"] == "boots"
    assert others is not None
    assert others[SYNCER_FIELD]["deleted"] is True


def test_a_put_of_a_reread_millisecond_delivered_later_does_not_bring_the_item_back() -> None:
    """The property's counterexample, kept: a REMOVE; then a batch whose changes share a
    millisecond, so its re-read finds the item gone over the REMOVE's tombstone; then a put of
    that millisecond delivered again. The index must stay deleted, as the table is.

    Failed on the old code: the re-read kept the REMOVE's older tombstone, and the later put
    won against it."""
    m = "MILLISECOND"
    steps = [(1, "put", m), (999, "remove", m), (1, "put", m), (1, "put", m), (1, "put", m)]
    steps += [(997, "put", m), (1, "put", m), (1, "remove", m)]
    records, final = _history(steps)
    search, items = FakeSearch(), FakeItems()
    search.create("catalog")
    _table_holds(items, final)
    for batch in ([1], [5, 7, 3, 4, 2], [6, 0]):
        outcome = process_batch(
            [records[n] for n in batch], _config(), fake_sinks(search, items=items)
        )
        assert outcome.failed_sequence_numbers == ()
    document = search.document("catalog", "p-1|v1")
    assert final is None
    assert document is None or document[SYNCER_FIELD]["deleted"] is True
