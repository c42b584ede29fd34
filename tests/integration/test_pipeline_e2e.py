"""End to end through lambda_handler on real stream records from the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import BOTH_REDIS_TOPOLOGIES, Stack

pytestmark = pytest.mark.integration


def _item(pk: str, category: str = "shoes", **extra: dict[str, object]) -> dict[str, object]:
    item: dict[str, object] = {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "name": {"S": f"Product {pk} ✓"},
        "category": {"S": category},
        "price": {"N": "19.99"},
        "cost": {"N": "7"},
    }
    item.update(extra)
    return item


def test_inserts_modifies_and_removes_end_equal_to_the_table(stack: Stack) -> None:
    """After delivering the stream, search through the alias shows exactly the table's items."""
    # given items written, one changed and one deleted
    for number in range(30):
        stack.put(_item(f"p{number}"))
    stack.put(_item("p3", category="hats"))
    stack.delete("p4", "v1")
    # when the stream is delivered in batches
    responses = stack.deliver(batch_size=7)
    # then every batch succeeded and the index equals a table scan
    assert all(r == {"batchItemFailures": []} for r in responses)
    assert stack.indexed() == stack.scanned()
    assert len(stack.indexed()) == 29


def test_excluded_attributes_never_reach_the_index(stack: Stack) -> None:
    """An attribute listed in exclude_attributes is absent from the document."""
    stack.put(_item("secret"))
    stack.deliver()
    (document,) = stack.indexed().values()
    assert "cost" not in document
    assert document["price"] == 19.99


def test_every_attribute_type_is_indexed_exactly(stack: Stack) -> None:
    """Sets, maps, lists, binary, nulls, unicode and a 38-digit integer survive into _source."""
    big = "12345678901234567890123456789012345678"
    stack.put(
        _item(
            "types",
            huge={"N": big},
            tiny={"N": "-1.5E-7"},
            flag={"BOOL": True},
            nothing={"NULL": True},
            blob={"B": b"\x00\x01\xff"},
            blobs={"BS": [b"b", b"a"]},
            words={"SS": ["zeta", "alpha", "日本"]},
            numbers={"NS": ["3", "-1", "2.5"]},
            nested={
                "M": {"list": {"L": [{"M": {"deep": {"S": "🙂"}}}, {"M": {"deep": {"S": "x"}}}]}}
            },
        )
    )
    stack.deliver()
    client = stack.sinks.opensearch
    raw = client.transport.perform_request("GET", f"/{stack.index}/_doc/types%7Cv1", params={})
    text = json.dumps(raw)
    document = raw["_source"]
    assert big in text or str(document["huge"]) == big
    assert document["words"] == ["alpha", "zeta", "日本"]
    assert document["numbers"] == [-1, 2.5, 3]
    assert document["blob"] == "AAH/"
    assert document["blobs"] == ["YQ==", "Yg=="]
    assert document["nested"]["list"][0]["deep"] == "🙂"
    assert document["nothing"] is None
    assert document["_syncer"]["deleted"] is False


@BOTH_REDIS_TOPOLOGIES
def test_changed_items_invalidate_their_cache_keys(stack: Stack) -> None:
    """Keys of both the old and the new category are deleted when an item moves."""
    redis = stack.sinks.redis
    stack.put(_item("moved", category="shoes"))
    stack.deliver()
    # one SET per key: an MSET across hash slots is refused by a cluster
    for key in ("product:moved", "product:moved:v1", "category:shoes", "category:hats"):
        redis.set(key, "1")
    # a category no item of any test has, so that no other suite on the same Redis deletes it
    untouched = f"category:untouched-{stack.table}"
    redis.set(untouched, "1")
    stack.put(_item("moved", category="hats"))
    stack.deliver()
    assert redis.exists("product:moved", "product:moved:v1", "category:shoes", "category:hats") == 0
    assert redis.exists(untouched) == 1


def test_redelivering_an_older_batch_never_goes_back_in_time(stack: Stack) -> None:
    """A batch delivered again after newer changes were applied changes nothing."""
    stack.put(_item("again", category="shoes"))
    first = stack.new_records()
    stack.invoke(first)
    stack.put(_item("again", category="hats"))
    stack.delete("again", "v1")
    stack.deliver()
    stack.invoke(first)
    assert stack.indexed() == stack.scanned() == {}


def test_a_record_of_an_unconfigured_table_goes_to_the_dead_letters(stack: Stack) -> None:
    """A record whose table is not configured is dead-lettered with the reason; the rest applies."""
    stack.put(_item("ok"))
    records = stack.new_records()
    stranger = json.loads(json.dumps(records[0]))
    stranger["eventSourceARN"] = stranger["eventSourceARN"].replace(stack.table, "unknown-table")
    stranger["dynamodb"]["SequenceNumber"] = "9" * 30
    response = stack.invoke([*records, stranger])
    assert response == {"batchItemFailures": []}
    assert set(stack.indexed()) == {"ok|v1"}
    letters = [
        json.loads(line)
        for line in Path(stack.config.deadletter.file or "").read_text().splitlines()
    ]
    assert letters[-1]["table"] == "unknown-table"
    assert "not configured" in letters[-1]["error"]["message"]


@pytest.mark.parametrize("view_type", ["KEYS_ONLY", "OLD_IMAGE"])
def test_streams_without_new_images_index_the_current_item(stack: Stack) -> None:
    """KEYS_ONLY and OLD_IMAGE streams read the item from the table and index it or delete it."""
    stack.put(_item("k1"))
    stack.put(_item("k2"))
    stack.put(_item("k1", category="bags"))
    stack.delete("k2", "v1")
    responses = stack.deliver(batch_size=2)
    assert all(r == {"batchItemFailures": []} for r in responses)
    assert stack.indexed() == stack.scanned()
    assert stack.indexed()["k1|v1"]["category"] == "bags"


def test_a_document_opensearch_rejects_is_dead_lettered_and_the_batch_proceeds(
    stack: Stack,
) -> None:
    """A list mixing strings and numbers cannot be mapped; its record is dead-lettered with why."""
    stack.put(_item("mixed", mixed={"L": [{"S": "x"}, {"N": "1"}]}))
    stack.put(_item("fine"))
    response = stack.deliver()
    assert response == [{"batchItemFailures": []}]
    assert set(stack.indexed()) == {"fine|v1"}
    letters = [
        json.loads(line)
        for line in Path(stack.config.deadletter.file or "").read_text().splitlines()
    ]
    assert letters[-1]["error"]["class"] == "DocumentRejectedError"
    assert "mixed" in letters[-1]["error"]["message"]


def test_the_cycle_collector_is_on_after_a_batch_and_off_only_for_who_turned_it_off(
    stack: Stack,
) -> None:
    """The handler holds the collector off for the batch only; a caller's choice is kept."""
    import gc

    # given an item and the collector on
    stack.put(_item("gc1"))
    assert gc.isenabled()
    # when the stream is delivered
    (response,) = stack.deliver()
    # then the batch is applied and the collector is on again
    assert response == {"batchItemFailures": []}
    assert gc.isenabled()
    # and a caller that turned it off finds it still off after the next batch
    stack.put(_item("gc2"))
    gc.disable()
    try:
        (response,) = stack.deliver()
        assert response == {"batchItemFailures": []}
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert len(stack.indexed()) == 2
