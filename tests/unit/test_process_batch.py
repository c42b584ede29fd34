"""process_batch on the in-memory fakes of its ports: the failure table, poison records, routes
and conflicts, without any server (the same cases run on real services in tests/integration)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from syncer.config import Config, parse_config
from syncer.core.documents import SYNCER_FIELD
from syncer.errors import CacheUnavailableError, SearchUnavailableError, TableReadError
from syncer.pipeline import process_batch
from tests.fakes import FakeCache, FakeItems, FakeLetters, FakeSearch, fake_sinks

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"
SEQ = 300000000000000000000


def _config(on_failure: str = "retry", routes: str = "") -> Config:
    table_keys = (
        "" if routes else 'index = "catalog"\ncache_keys = ["product:{pk}", "category:{category}"]'
    )
    text = f"""
[redis]
on_failure = "{on_failure}"

[[tables]]
name = "catalog"
{table_keys}
exclude_attributes = ["cost"]
{routes}
"""
    return parse_config(tomllib.loads(text), environ={})


def _typed(plain: dict[str, Any]) -> dict[str, Any]:
    return {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in plain.items()}


def record(
    event: str,
    pk: str,
    offset: int,
    view: str = "NEW_AND_OLD_IMAGES",
    **image: Any,
) -> dict[str, Any]:
    """A stream record of item (pk, "v1") with sequence number SEQ + offset."""
    keys = {"pk": pk, "sk": "v1"}
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": 1704067200,
        "Keys": _typed(keys),
        "SequenceNumber": str(SEQ + offset),
        "SizeBytes": 64,
        "StreamViewType": view,
    }
    if event != "REMOVE" and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = _typed({**keys, **image})
    return {
        "eventID": f"{offset:032x}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": body,
        "eventSourceARN": ARN,
    }


@pytest.fixture
def search() -> FakeSearch:
    search = FakeSearch()
    search.create("catalog")
    return search


def test_a_batch_is_written_coalesced_and_invalidated(search: FakeSearch) -> None:
    """Each key's newest change is indexed, a REMOVE tombstoned, every cache key cleared."""
    # given two keys, one changed twice, and a removal
    cache = FakeCache()
    records = [
        record("INSERT", "p-1", 1, category="shoes", cost=3),
        record("MODIFY", "p-1", 2, category="boots", cost=3),
        record("REMOVE", "p-2", 3),
    ]
    # when the batch runs on the fakes
    outcome = process_batch(records, _config(), fake_sinks(search, cache))
    # then every record is acknowledged, one write per key
    assert outcome.failed_sequence_numbers == ()
    assert (outcome.keys, outcome.indexed, outcome.deleted) == (2, 1, 1)
    written = search.document("catalog", "p-1|v1")
    assert written is not None
    assert written["category"] == "boots"
    assert "cost" not in written
    tombstone = search.document("catalog", "p-2|v1")
    assert tombstone is not None
    assert tombstone[SYNCER_FIELD]["deleted"] is True
    assert cache.invalidated == [{"product:p-1", "category:shoes", "category:boots", "product:p-2"}]
    assert [key.document_id for key in outcome.written] == ["p-1|v1", "p-2|v1"]


def test_an_older_change_is_skipped(search: FakeSearch) -> None:
    """A change older than the indexed state is not written, and is acknowledged."""
    # given an index that holds a newer change of the key
    process_batch([record("MODIFY", "p-1", 9, category="new")], _config(), fake_sinks(search))
    # when an older change of it arrives
    outcome = process_batch(
        [record("MODIFY", "p-1", 5, category="old")], _config(), fake_sinks(search)
    )
    # then it is skipped and the newer state stays
    assert outcome.skipped_stale == 1
    assert outcome.failed_sequence_numbers == ()
    assert search.document("catalog", "p-1|v1")["category"] == "new"


def test_a_conflict_is_planned_again(search: FakeSearch) -> None:
    """A 409 on the write (another writer got there) is read and planned again, then written."""
    # given a key whose first write meets a conflict
    search.item_statuses["p-1|v1"] = [409]
    # when the batch runs
    outcome = process_batch(
        [record("INSERT", "p-1", 1, category="shoes")], _config(), fake_sinks(search)
    )
    # then it is written in a later round and acknowledged
    assert outcome.indexed == 1
    assert outcome.failed_sequence_numbers == ()
    assert search.bulk_requests == 2


def test_inserts_are_created_without_reading_the_index(search: FakeSearch) -> None:
    """A batch of INSERTs reads no document first: each is a create, refused if one exists."""
    # given a batch of new items
    records = [record("INSERT", f"p-{n}", n, category="shoes") for n in range(1, 6)]
    # when it runs
    outcome = process_batch(records, _config(), fake_sinks(search))
    # then every item is indexed and no document was read
    assert outcome.indexed == 5
    assert search.documents_read == 0


def test_a_replayed_insert_still_loses_to_a_newer_state(search: FakeSearch) -> None:
    """An INSERT delivered again after its item's REMOVE leaves the tombstone in place."""
    # given an item inserted, then removed
    process_batch([record("INSERT", "p-1", 1, category="shoes")], _config(), fake_sinks(search))
    process_batch([record("REMOVE", "p-1", 2)], _config(), fake_sinks(search))
    # when the INSERT is delivered again (a retried batch)
    outcome = process_batch(
        [record("INSERT", "p-1", 1, category="shoes")], _config(), fake_sinks(search)
    )
    # then its create meets the tombstone, is read and planned again, and skipped
    assert outcome.skipped_stale == 1
    assert outcome.failed_sequence_numbers == ()
    assert search.document("catalog", "p-1|v1")[SYNCER_FIELD]["deleted"] is True


# The failure table (docs/operations.md "How failures are handled"), one row per case.
FAILURES = [
    # (what fails, [redis] on_failure, failed records, dead-letter error class or None)
    ("nothing", "retry", False, None),
    ("opensearch", "retry", True, None),
    ("opensearch", "deadletter", True, None),
    ("redis", "retry", True, None),
    ("redis", "deadletter", False, "CacheInvalidationError"),
    ("document 400", "retry", False, "DocumentRejectedError"),
    ("document 400 and redis", "retry", True, None),
    ("document 429", "retry", True, None),
]


@pytest.mark.parametrize(("failing", "policy", "retried", "letter"), FAILURES)
def test_failure_table(
    search: FakeSearch, failing: str, policy: str, retried: bool, letter: str | None
) -> None:
    """Each downstream failure retries or dead-letters the records, never acknowledges them."""
    # given a batch and a failing downstream
    cache, letters = FakeCache(), FakeLetters()
    if "opensearch" in failing:
        search.fail_next = [SearchUnavailableError("down")] * 10
    if "redis" in failing:
        cache.fail_next = [CacheUnavailableError("down")] * 10
    if "400" in failing:
        search.item_statuses["p-1|v1"] = [400]
    if "429" in failing:
        search.item_statuses["p-1|v1"] = [429] * 10
    # when the batch runs
    outcome = process_batch(
        [record("INSERT", "p-1", 1, category="shoes")],
        _config(policy),
        fake_sinks(search, cache, letters=letters),
    )
    # then the record is retried, dead-lettered with the reason, or acknowledged
    assert outcome.failed_sequence_numbers == ((str(SEQ + 1),) if retried else ())
    assert [lt.error_class for lt in letters.letters] == ([letter] if letter else [])


def test_a_dead_letter_that_cannot_be_written_is_retried(search: FakeSearch) -> None:
    """When the dead letters cannot be written, the records are reported, never dropped."""
    # given a rejected document and dead letters that keep failing
    search.item_statuses["p-1|v1"] = [400]
    letters = FakeLetters()
    letters.fail_next = [OSError(5, "disk gone")] * 10
    # when the batch runs
    outcome = process_batch(
        [record("INSERT", "p-1", 1, category="shoes")],
        _config(),
        fake_sinks(search, letters=letters),
    )
    # then the record is retried
    assert outcome.failed_sequence_numbers == (str(SEQ + 1),)
    assert outcome.dead_lettered == 0


def test_a_poison_record_is_dead_lettered_and_harms_nothing_else(search: FakeSearch) -> None:
    """A record that cannot be decoded is dead-lettered; the rest of the batch is written."""
    # given a batch with one record without a usable sequence number
    bad = record("INSERT", "p-9", 9, category="x")
    bad["dynamodb"]["SequenceNumber"] = "12ab"
    letters = FakeLetters()
    # when the batch runs
    outcome = process_batch(
        [record("INSERT", "p-1", 1, category="shoes"), bad],
        _config(),
        fake_sinks(search, letters=letters),
    )
    # then the bad record is a dead letter, and the good one is indexed
    assert outcome.indexed == 1
    assert outcome.dead_lettered == 1
    assert letters.letters[0].error_class == "PoisonRecordError"
    assert "SequenceNumber" in letters.letters[0].message


def test_a_keys_only_change_indexes_the_item_read(search: FakeSearch) -> None:
    """A KEYS_ONLY change is written as the table's item, read by key."""
    # given the item in the table and a KEYS_ONLY change of it
    items = FakeItems()
    items.put("catalog", _typed({"pk": "p-1", "sk": "v1", "category": "tents"}), ("pk", "sk"))
    # when the batch runs
    outcome = process_batch(
        [record("MODIFY", "p-1", 1, view="KEYS_ONLY")], _config(), fake_sinks(search, items=items)
    )
    # then the read item is the document
    assert outcome.indexed == 1
    assert search.document("catalog", "p-1|v1")["category"] == "tents"


def test_a_failed_item_read_retries_only_its_keys(search: FakeSearch) -> None:
    """When the table cannot be read, its KEYS_ONLY changes are retried; other keys are not."""
    # given a table read that keeps failing
    items = FakeItems()
    items.fail_next = [TableReadError("throttled")] * 10
    records = [
        record("MODIFY", "p-1", 1, view="KEYS_ONLY"),
        record("INSERT", "p-2", 2, category="shoes"),
    ]
    # when the batch runs
    outcome = process_batch(records, _config(), fake_sinks(search, items=items))
    # then only the change that needed the read is retried
    assert outcome.failed_sequence_numbers == (str(SEQ + 1),)
    assert outcome.indexed == 1


ROUTES = """
[[tables.routes]]
index = "boots"
match = { attribute = "category", equals = "boots" }
cache_keys = ["boot:{pk}"]

[[tables.routes]]
index = "others"
match = { attribute = "category", begins_with = "" }
cache_keys = ["other:{pk}"]
"""


def test_routes_put_the_document_in_its_route_and_tombstones_elsewhere() -> None:
    """A routed item is indexed where its route sends it; the other route gets a tombstone."""
    # given a routed table
    search = FakeSearch()
    search.create("boots")
    search.create("others")
    cache = FakeCache()
    # when a boot is written
    outcome = process_batch(
        [record("INSERT", "p-1", 1, category="boots")],
        _config(routes=ROUTES),
        fake_sinks(search, cache),
    )
    # then it is in "boots", a tombstone is in "others", and its route's keys are cleared
    assert outcome.indexed == 1
    assert search.document("boots", "p-1|v1")["category"] == "boots"
    assert search.document("others", "p-1|v1")[SYNCER_FIELD]["deleted"] is True
    assert cache.invalidated == [{"boot:p-1"}]
    assert outcome.written[0].index == "boots"


def test_redrive_tells_rejected_again_from_redriven_by_record_identity(search: FakeSearch) -> None:
    """A redriven record rejected again, one written and one failing each get their own fate."""
    from syncer.commands.redrive import Fate, redrive_entries

    # given dead-letter entries of three items: one OpenSearch refuses, one it takes, one 429s
    search.item_statuses["p-1|v1"] = [400]
    search.item_statuses["p-3|v1"] = [429] * 10
    entries = [
        {"record": record("INSERT", f"p-{n}", n, category="shoes"), "error": {}} for n in (1, 2, 3)
    ]
    letters = FakeLetters()
    # when they are redriven through the pipeline
    fates = redrive_entries(entries, _config(), fake_sinks(search, letters=letters))
    # then each entry's fate follows its own record, told apart by stream and sequence number
    assert fates == [Fate.REJECTED_AGAIN, Fate.REDRIVEN, Fate.FAILED_AGAIN]
    assert [letter.sequence_text for letter in letters.letters] == [str(SEQ + 1)]


# Known states (syncer.core.known, docs/ordering.md "Mechanism"): an update of a key this
# process last wrote is planned against that state, unread; OpenSearch checks the write.
def test_an_update_of_a_key_written_before_is_not_read_first(search: FakeSearch) -> None:
    """The second batch's MODIFY is written over the state the first batch wrote, unread."""
    sinks = fake_sinks(search, FakeCache())
    process_batch([record("INSERT", "p-1", 1, category="shoes")], _config(), sinks)
    read_before, lookups_before = search.documents_read, search.alias_lookups
    outcome = process_batch([record("MODIFY", "p-1", 2, category="boots")], _config(), sinks)
    assert outcome.failed_sequence_numbers == ()
    assert search.documents_read == read_before  # no _mget
    assert search.alias_lookups == lookups_before + 1  # the alias resolved once
    assert (outcome.known_states_used, outcome.known_states_stale) == (1, 0)
    assert search.document("catalog", "p-1|v1")["category"] == "boots"


def test_a_known_state_off_the_alias_is_read_and_written_where_the_alias_points(
    search: FakeSearch,
) -> None:
    """After the alias moved to another index, the known state is not used: the change lands
    in the index the alias names now, planned against what that index holds."""
    sinks = fake_sinks(search, FakeCache())
    process_batch([record("INSERT", "p-1", 1, category="shoes")], _config(), sinks)
    old_index = search.aliases["catalog"]
    search.indices["catalog-000002"] = {}
    search.aliases["catalog"] = "catalog-000002"  # moved without blocking the old index
    outcome = process_batch([record("MODIFY", "p-1", 2, category="boots")], _config(), sinks)
    assert outcome.failed_sequence_numbers == ()
    assert search.document("catalog", "p-1|v1")["category"] == "boots"
    assert search.indices[old_index]["p-1|v1"][0]["category"] == "shoes"


def test_a_known_state_another_writer_replaced_invalidates_that_writers_cache_keys(
    search: FakeSearch,
) -> None:
    """A write over a stale known state meets a 409; the state then read is the one replaced,
    so its cache keys are invalidated, not the known state's."""
    cache = FakeCache()
    sinks = fake_sinks(search, cache)
    process_batch([record("INSERT", "p-1", 1, category="shoes")], _config(), sinks)
    other = fake_sinks(search, FakeCache())  # another container, its own known states
    process_batch([record("MODIFY", "p-1", 2, category="sandals")], _config(), other)
    outcome = process_batch([record("MODIFY", "p-1", 3, category="boots")], _config(), sinks)
    assert outcome.failed_sequence_numbers == ()
    assert search.document("catalog", "p-1|v1")["category"] == "boots"
    assert "category:sandals" in cache.invalidated[-1]
    assert (outcome.known_states_used, outcome.known_states_stale) == (1, 1)


def test_known_states_off_reads_every_batch(search: FakeSearch) -> None:
    """``[opensearch] known_states = 0`` keeps nothing: every update is read first."""
    config = _config()
    sinks = fake_sinks(search, FakeCache())
    sinks.known.capacity = 0
    process_batch([record("INSERT", "p-1", 1, category="shoes")], config, sinks)
    read_before = search.documents_read
    process_batch([record("MODIFY", "p-1", 2, category="boots")], config, sinks)
    assert search.documents_read == read_before + 1
    assert search.alias_lookups == 0
