"""Coalescing keeps, per item key, every record oldest first and the newest as ``latest``."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncer.core.coalesce import KeyChange, coalesce_latest_per_key
from syncer.core.records import ChangeRecord, check_event, decode_records, document_id

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)

# (table, partition key): a small set so that keys repeat often.
KEYS = [("catalog", "p-1"), ("catalog", "p-2"), ("catalog", "p|3"), ("orders", "p-1")]

# Stream sequence numbers: 21 to 40 digits, so text order and numeric order often disagree.
sequence_numbers = st.integers(min_value=21, max_value=40).flatmap(
    lambda digits: st.integers(min_value=10 ** (digits - 1), max_value=10**digits - 1)
)


@st.composite
def record_specs(draw: st.DrawFn) -> list[tuple[tuple[str, str], int, str]]:
    """Lists of (key, distinct sequence number, event name) in arbitrary order."""
    sequences = draw(st.lists(sequence_numbers, min_size=1, max_size=25, unique=True))
    return [
        (
            draw(st.sampled_from(KEYS)),
            sequence,
            draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])),
        )
        for sequence in sequences
    ]


def _build(make_record, specs: Sequence[tuple[tuple[str, str], int, str]]) -> list[ChangeRecord]:
    records = []
    for (table, pk), sequence, event_name in specs:
        image = {"name": f"seq {sequence}"}
        new = None if event_name == "REMOVE" else image
        old = None if event_name == "INSERT" else image
        records.append(
            make_record(event_name, sequence, keys={"pk": pk}, new=new, old=old, table=table)
        )
    return records


def _summary(changes: Sequence[KeyChange]) -> dict[tuple[str, str], tuple[int, tuple[int, ...]]]:
    """Order-free view of a coalesced batch: key -> (latest sequence, all sequences)."""
    return {
        (c.table, c.document_id): (
            c.latest.sequence_number,
            tuple(r.sequence_number for r in c.records),
        )
        for c in changes
    }


def test_latest_is_the_highest_sequence_number_as_an_integer(make_record) -> None:
    """A 22-digit sequence number beats a 21-digit one although it sorts lower as text."""
    # given two changes of one key where text order is wrong: "999...9" (21) < "100...0" (22)
    older = make_record("MODIFY", "9" * 21, new={"name": "old"}, old={"name": "older"})
    newer = make_record("MODIFY", "1" + "0" * 21, new={"name": "new"}, old={"name": "old"})
    assert str(older.sequence_number) > str(newer.sequence_number)
    # when they are coalesced, newest delivered first
    (change,) = coalesce_latest_per_key([newer, older])
    # then the 22-digit record is the latest
    assert change.latest is newer
    assert change.records == (older, newer)


def test_distinct_keys_stay_separate(make_record) -> None:
    """Changes of different keys are never merged, and keys keep their first-seen order."""
    # given records of two keys, interleaved
    a1 = make_record("INSERT", 100000000000000000001, keys={"pk": "a"}, new={})
    b1 = make_record("INSERT", 100000000000000000002, keys={"pk": "b"}, new={})
    a2 = make_record("REMOVE", 100000000000000000003, keys={"pk": "a"}, old={})
    # when they are coalesced
    changes = coalesce_latest_per_key([a1, b1, a2])
    # then there is one change per key, in first-seen order
    assert [(c.document_id, c.latest) for c in changes] == [("a", a2), ("b", b1)]


def test_same_key_in_two_tables_is_two_changes(make_record) -> None:
    """One key value in two tables is two different items."""
    # given the same key in two tables
    catalog = make_record(
        "INSERT", 100000000000000000001, keys={"pk": "a"}, new={}, table="catalog"
    )
    orders = make_record("INSERT", 100000000000000000002, keys={"pk": "a"}, new={}, table="orders")
    # when they are coalesced
    changes = coalesce_latest_per_key([catalog, orders])
    # then each table keeps its own change
    assert [(c.table, c.latest) for c in changes] == [("catalog", catalog), ("orders", orders)]


def test_sequence_texts_are_oldest_first(make_record) -> None:
    """sequence_texts lists a key's sequence numbers as the stream spelled them, oldest first."""
    # given three records of one key, delivered out of order
    texts = ["111000000000000000210", "111000000000000000001", "111000000000000000057"]
    records = [make_record("MODIFY", t, new={}, old={}) for t in texts]
    # when they are coalesced
    (change,) = coalesce_latest_per_key(records)
    # then the texts come back sorted by sequence
    assert change.sequence_texts == tuple(sorted(texts))


def test_empty_batch_has_no_changes() -> None:
    """Coalescing nothing gives nothing."""
    # given no records
    # when they are coalesced
    # then there are no changes
    assert coalesce_latest_per_key([]) == []


def test_event_file_coalesces_to_the_remove(load_event) -> None:
    """The insert, modify and remove of one item coalesce to the remove, the other item kept apart."""
    # given the insert/modify/remove event
    decoded, _ = decode_records(check_event(load_event("insert_modify_remove.json")))
    # when it is coalesced
    first, second = coalesce_latest_per_key(decoded)
    # then the first item ends removed after three records, the second is its insert
    assert first.latest.is_remove
    assert len(first.records) == 3
    assert second.records == (decoded[3],)


@PROPERTY_SETTINGS
@given(specs=record_specs())
@example(specs=[(KEYS[0], int("9" * 21), "MODIFY"), (KEYS[0], int("1" + "0" * 21), "REMOVE")])
@example(specs=[(KEYS[0], int("1" + "0" * 21), "REMOVE"), (KEYS[0], int("9" * 21), "MODIFY")])
def test_exactly_one_change_per_key_with_the_max_sequence(make_record, specs) -> None:
    """Every key gets exactly one change, whose latest record has the key's highest sequence number."""
    # given records of a few keys with distinct sequence numbers in any order
    records = _build(make_record, specs)
    # when they are coalesced
    changes = coalesce_latest_per_key(records)
    # then each key appears once and its latest is the integer maximum
    expected: dict[tuple[str, str], int] = {}
    for (table, pk), sequence, _ in specs:
        key = (table, document_id({"pk": pk}))
        expected[key] = max(sequence, expected.get(key, 0))
    assert len(changes) == len({(c.table, c.document_id) for c in changes})
    assert {(c.table, c.document_id): c.latest.sequence_number for c in changes} == expected


@PROPERTY_SETTINGS
@given(specs=record_specs())
def test_records_of_a_change_are_all_its_records_oldest_first(make_record, specs) -> None:
    """A change's records are exactly that key's records, sorted by sequence number as integers."""
    # given records of a few keys in any order
    records = _build(make_record, specs)
    # when they are coalesced
    changes = coalesce_latest_per_key(records)
    # then each change holds all and only its key's records, oldest first, ending with latest
    for change in changes:
        own = [r for r in records if (r.table, r.document_id) == (change.table, change.document_id)]
        assert sorted(change.records, key=id) == sorted(own, key=id)
        numbers = [r.sequence_number for r in change.records]
        assert numbers == sorted(numbers)
        assert change.records[-1] is change.latest
    assert sum(len(c.records) for c in changes) == len(records)


@PROPERTY_SETTINGS
@given(data=st.data(), specs=record_specs())
def test_result_does_not_depend_on_delivery_order(make_record, data, specs) -> None:
    """Any permutation of the batch coalesces to the same latest record and history per key."""
    # given a batch and a permutation of it
    records = _build(make_record, specs)
    shuffled = data.draw(st.permutations(records))
    # when both are coalesced
    # then every key has the same latest record and the same ordered records
    assert _summary(coalesce_latest_per_key(shuffled)) == _summary(coalesce_latest_per_key(records))
