"""Planning turns a key change into one conditional document write and a set of cache keys."""

from __future__ import annotations

import pytest

from syncer.config import TableConfig
from syncer.config.templates import render_cache_key
from syncer.core import jsoncodec
from syncer.core.coalesce import KeyChange, coalesce_latest_per_key
from syncer.core.documents import SYNCER_FIELD, IndexedDocument, Verdict, WriteKind
from syncer.core.plan import plan_cache_keys
from syncer.core.records import padded_sequence
from syncer.core.versions import Version
from syncer.errors import PoisonRecordError
from syncer.sinks.search import bulk_chunks
from tests.helpers import plan_key

TABLE = TableConfig(
    name="catalog",
    index="catalog",
    cache_keys=("product:{pk}", "product:{pk}:{sk}", "category:{category}"),
    exclude_attributes=frozenset({"cost"}),
)
STREAM_MS = 1704067200000  # the unit conftest's stream label, 2024-01-01T00:00:00.000
SEQ_OLD = 111000000000000000001
SEQ = 111000000000000000057
SEQ_NEW = 111000000000000000210
SHOE = {"name": "Trail runner", "category": "shoes", "cost": 41}
BOOT = {"name": "Trail runner", "category": "boots", "cost": 41}


def _indexed(
    sequence_number: int | None, fields: dict[str, object] | None = None
) -> IndexedDocument:
    return IndexedDocument(
        version=Version(seq=sequence_number),
        deleted=False,
        seq_no=17,
        primary_term=3,
        fields=fields or {},
    )


def _change(*records) -> KeyChange:
    (change,) = coalesce_latest_per_key(records)
    return change


def _action_of(write) -> dict[str, object]:
    ((_, body),) = bulk_chunks([write], max_actions=10, max_bytes=10**6)
    action: dict[str, object] = jsoncodec.loads(body.split(b"\n")[0])
    return action


@pytest.mark.parametrize("indexed_sequence", [SEQ, SEQ_NEW], ids=["equal", "newer"])
def test_write_is_skipped_when_index_is_as_new_or_newer(make_record, indexed_sequence: int) -> None:
    """A change is not written when the index already holds that sequence number or a later one."""
    # given a change and an index at the same or a later sequence number
    change = _change(make_record("MODIFY", SEQ, new=BOOT, old=SHOE))
    # when it is planned
    write = plan_key(change, TABLE, _indexed(indexed_sequence))
    # then nothing is written
    assert write is Verdict.SKIP


def test_absent_document_is_created(make_record) -> None:
    """A key the index does not hold gets a 'create' write of the new image."""
    # given an insert of a key the index does not have
    change = _change(make_record("INSERT", SEQ, new=SHOE))
    # when it is planned
    write = plan_key(change, TABLE, None)
    # then it creates the document from the new image
    assert write is not None
    assert write.kind is WriteKind.INDEX
    assert write.ref == ("catalog", "p-1|v1")
    assert write.expected is None
    assert _action_of(write) == {"create": {"_index": "catalog", "_id": "p-1|v1"}}
    assert write.body["name"] == "Trail runner"
    assert write.body[SYNCER_FIELD] == {
        "seq": padded_sequence(SEQ),
        "table": "catalog",
        "deleted": False,
        "changed_at": 1704067200000,
        "stream": STREAM_MS,
    }


def test_present_document_is_indexed_conditionally(make_record) -> None:
    """An older indexed document is replaced with if_seq_no and if_primary_term from the read."""
    # given a change newer than the indexed document
    change = _change(make_record("MODIFY", SEQ_NEW, new=BOOT, old=SHOE))
    indexed = _indexed(SEQ)
    # when it is planned
    write = plan_key(change, TABLE, indexed)
    # then it is an index action conditioned on the read document
    assert write is not None
    assert write.expected is indexed
    assert _action_of(write) == {
        "index": {"_index": "catalog", "_id": "p-1|v1", "if_seq_no": 17, "if_primary_term": 3}
    }


def test_document_from_a_full_scan_is_replaced(make_record) -> None:
    """A document without a sequence number (from a full scan) is replaced by any stream change."""
    # given an indexed document with no sequence number
    change = _change(make_record("MODIFY", SEQ_OLD, new=BOOT, old=SHOE))
    # when it is planned
    write = plan_key(change, TABLE, _indexed(None))
    # then it is written
    assert write is not None
    assert write.kind is WriteKind.INDEX


def test_only_the_latest_record_decides_the_body(make_record) -> None:
    """A coalesced change writes the state of its newest record."""
    # given an insert and a later modify of one key, delivered newest first
    change = _change(
        make_record("MODIFY", SEQ_NEW, new=BOOT, old=SHOE), make_record("INSERT", SEQ, new=SHOE)
    )
    # when it is planned
    write = plan_key(change, TABLE, None)
    # then the body is the modify's new image at its sequence number
    assert write is not None
    assert write.body["category"] == "boots"
    assert write.body[SYNCER_FIELD]["seq"] == padded_sequence(SEQ_NEW)


@pytest.mark.parametrize("ttl", [True, False], ids=["ttl", "user-delete"])
def test_remove_writes_a_tombstone(make_record, ttl: bool) -> None:
    """A REMOVE becomes a tombstone that records whether TTL deleted the item."""
    # given a remove of an indexed key
    change = _change(make_record("REMOVE", SEQ_NEW, old=BOOT, ttl=ttl))
    # when it is planned
    write = plan_key(change, TABLE, _indexed(SEQ))
    # then a tombstone holding only _syncer is written
    assert write is not None
    assert write.kind is WriteKind.TOMBSTONE
    assert write.body == {
        SYNCER_FIELD: {
            "seq": padded_sequence(SEQ_NEW),
            "table": "catalog",
            "deleted": True,
            "changed_at": 1704067200000,
            "stream": STREAM_MS,
            "ttl": ttl,
        }
    }


def test_keys_only_change_uses_the_item_read_from_the_table(make_record) -> None:
    """A KEYS_ONLY change indexes the item read from the table."""
    # given a KEYS_ONLY modify and the current item
    change = _change(make_record("MODIFY", SEQ, view_type="KEYS_ONLY"))
    current = {"pk": "p-1", "sk": "v1", **BOOT}
    # when it is planned with that item
    write = plan_key(change, TABLE, None, current)
    # then the item is the body
    assert write is not None
    assert write.kind is WriteKind.INDEX
    assert write.body["category"] == "boots"


def test_keys_only_change_of_a_vanished_item_writes_a_tombstone(make_record) -> None:
    """A KEYS_ONLY change whose table read finds no item writes a tombstone."""
    # given a KEYS_ONLY modify and a lookup that found nothing
    change = _change(make_record("MODIFY", SEQ, view_type="KEYS_ONLY"))
    # when it is planned with None as the current item
    write = plan_key(change, TABLE, _indexed(SEQ_OLD), None)
    # then the document becomes a non-TTL tombstone
    assert write is not None
    assert write.kind is WriteKind.TOMBSTONE
    assert write.body[SYNCER_FIELD]["deleted"] is True
    assert write.body[SYNCER_FIELD]["ttl"] is False


def test_keys_only_change_without_a_lookup_is_a_programming_error(make_record) -> None:
    """Planning a KEYS_ONLY change without passing the table read fails loudly."""
    # given a KEYS_ONLY insert
    change = _change(make_record("INSERT", SEQ, view_type="KEYS_ONLY"))
    # when it is planned without current_item
    # then it refuses to guess
    with pytest.raises(ValueError, match="needs the item read from the table"):
        plan_key(change, TABLE, None)


def test_excluded_attributes_never_reach_the_body(make_record) -> None:
    """Attributes listed in exclude_attributes are left out of the document."""
    # given an item with the excluded attribute 'cost'
    change = _change(make_record("INSERT", SEQ, new=SHOE))
    # when it is planned
    write = plan_key(change, TABLE, None)
    # then 'cost' is not in the body
    assert write is not None
    assert "cost" not in write.body
    assert set(write.body) == {"pk", "sk", "name", "category", SYNCER_FIELD}


def test_excluded_attributes_are_dropped_from_a_table_read_too(make_record) -> None:
    """An item read from the table for a KEYS_ONLY change also loses its excluded attributes."""
    # given a KEYS_ONLY change and a current item with 'cost'
    change = _change(make_record("MODIFY", SEQ, view_type="KEYS_ONLY"))
    # when it is planned
    write = plan_key(change, TABLE, None, {"pk": "p-1", "sk": "v1", **SHOE})
    # then 'cost' is not in the body
    assert write is not None
    assert "cost" not in write.body


def test_item_with_reserved_attribute_is_poison(make_record) -> None:
    """An item with its own '_syncer' attribute cannot be indexed and is poison."""
    # given an item that has a '_syncer' attribute
    change = _change(make_record("INSERT", SEQ, new={**SHOE, SYNCER_FIELD: "mine"}))
    # when it is planned
    # then it is rejected, pointing at exclude_attributes
    with pytest.raises(PoisonRecordError, match="exclude_attributes"):
        plan_key(change, TABLE, None)


def test_reserved_attribute_is_allowed_once_excluded(make_record) -> None:
    """Excluding '_syncer' lets such an item be indexed with syncer's own metadata."""
    # given a table that excludes '_syncer' and an item that has it
    table = TableConfig(
        name="catalog", index="catalog", exclude_attributes=frozenset({SYNCER_FIELD})
    )
    change = _change(make_record("INSERT", SEQ, new={**SHOE, SYNCER_FIELD: "mine"}))
    # when it is planned
    write = plan_key(change, table, None)
    # then the body's _syncer is syncer's metadata
    assert write is not None
    assert write.body[SYNCER_FIELD]["seq"] == padded_sequence(SEQ)


def test_item_moved_between_categories_invalidates_both(make_record) -> None:
    """A change of category clears the cache keys of the old and the new category."""
    # given a modify from category shoes to boots
    change = _change(make_record("MODIFY", SEQ, new=BOOT, old=SHOE))
    # when its cache keys are planned
    keys = plan_cache_keys(change, TABLE)
    # then both categories and the product keys are cleared
    assert keys == {"product:p-1", "product:p-1:v1", "category:shoes", "category:boots"}


def test_absent_attribute_skips_that_cache_key(make_record) -> None:
    """A template whose attribute the item lacks produces no key."""
    # given an item without a category
    change = _change(make_record("INSERT", SEQ, new={"name": "x"}))
    # when its cache keys are planned
    keys = plan_cache_keys(change, TABLE)
    # then no category key is produced
    assert keys == {"product:p-1", "product:p-1:v1"}


def test_null_attribute_skips_that_cache_key(make_record) -> None:
    """A NULL attribute is treated like an absent one, not rendered as 'None'."""
    # given an item whose category is NULL
    change = _change(make_record("INSERT", SEQ, new={"category": None}))
    # when its cache keys are planned
    keys = plan_cache_keys(change, TABLE)
    # then no category key is produced
    assert keys == {"product:p-1", "product:p-1:v1"}


def test_cache_keys_are_the_union_over_all_records_of_the_key(make_record) -> None:
    """Every category the item passed through in the batch is cleared, not only the last two."""
    # given shoes -> boots -> sandals in one batch
    sandal = {**BOOT, "category": "sandals"}
    change = _change(
        make_record("MODIFY", SEQ_OLD, new=BOOT, old=SHOE),
        make_record("MODIFY", SEQ, new=sandal, old=BOOT),
        make_record("REMOVE", SEQ_NEW, old=sandal),
    )
    # when its cache keys are planned
    keys = plan_cache_keys(change, TABLE)
    # then every category seen is cleared
    assert {k for k in keys if k.startswith("category:")} == {
        "category:shoes",
        "category:boots",
        "category:sandals",
    }


def test_extra_states_add_their_cache_keys(make_record) -> None:
    """The indexed document and the table read add their keys, so KEYS_ONLY moves clear both places."""
    # given a KEYS_ONLY change, the indexed (old) state and the current (new) item
    change = _change(make_record("MODIFY", SEQ, view_type="KEYS_ONLY"))
    indexed_fields = {"category": "shoes", SYNCER_FIELD: {"seq": padded_sequence(SEQ_OLD)}}
    current = {"pk": "p-1", "sk": "v1", "category": "boots"}
    # when cache keys are planned with both as extra states (one absent)
    keys = plan_cache_keys(change, TABLE, [indexed_fields, current, None])
    # then both categories are cleared
    assert keys == {"product:p-1", "product:p-1:v1", "category:shoes", "category:boots"}


def test_table_without_cache_keys_plans_none(make_record) -> None:
    """A table with no cache key templates never clears anything."""
    # given a table without cache keys
    table = TableConfig(name="catalog", index="catalog")
    change = _change(make_record("MODIFY", SEQ, new=BOOT, old=SHOE))
    # when cache keys are planned
    # then there are none
    assert plan_cache_keys(change, table) == set()


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"pk": "p-1", "n": 7}, "item:p-1:7"),
        ({"pk": "p-1", "n": True}, "item:p-1:true"),
        ({"pk": "p-1", "n": ["x"]}, None),
        ({"pk": "p-1"}, None),
    ],
    ids=["number", "boolean", "list", "absent"],
)
def test_render_cache_key_only_fills_scalars(
    attributes: dict[str, object], expected: str | None
) -> None:
    """Strings, numbers and booleans fill a placeholder; anything else skips the key."""
    # given a template with two placeholders
    # when it is rendered
    # then scalars fill it and other values give None
    assert render_cache_key("item:{pk}:{n}", attributes) == expected
