"""KnownStates: bounded, oldest out first, a written state parsed when first looked up."""

from __future__ import annotations

from syncer.core.documents import SYNCER_FIELD, indexed_document
from syncer.core.known import KnownStates

KEPT = (SYNCER_FIELD, "category")


def _source(seq: int) -> dict[str, object]:
    return {SYNCER_FIELD: {"table": "t", "seq": str(seq).zfill(40)}, "category": "shoes"}


def test_the_oldest_state_goes_first_and_a_kept_one_moves_to_the_newest_end() -> None:
    known = KnownStates(capacity=2)
    for doc_id in ("a", "b"):
        known.remember_written(("catalog", doc_id), "catalog-1", _source(1), 1, 1, KEPT)
    known.remember_written(("catalog", "a"), "catalog-1", _source(2), 2, 1, KEPT)  # a is newest now
    known.remember_written(("catalog", "c"), "catalog-1", _source(3), 3, 1, KEPT)  # b goes
    assert set(known.lookup([("catalog", x) for x in "abc"])) == {
        ("catalog", "a"),
        ("catalog", "c"),
    }
    assert len(known) == 2


def test_a_written_state_is_what_a_read_of_it_would_give() -> None:
    known = KnownStates()
    body = {**_source(7), "name": "boot", "price": 12}  # the whole body written
    known.remember_written(("catalog", "a"), "catalog-1", body, 12, 3, (*KEPT, "brand"))
    ((index, state),) = known.lookup([("catalog", "a")]).values()
    assert index == "catalog-1"
    assert state == indexed_document(_source(7), 12, 3)  # what an _mget reads back, no brand
    assert state.version.seq == 7
    assert (state.seq_no, state.primary_term) == (12, 3)


def test_nothing_is_kept_at_capacity_zero_and_forget_drops_a_state() -> None:
    off = KnownStates(capacity=0)
    off.remember_written(("catalog", "a"), "catalog-1", _source(1), 1, 1, KEPT)
    assert off.lookup([("catalog", "a")]) == {}
    known = KnownStates()
    known.remember(("catalog", "a"), "catalog-1", indexed_document(_source(1), 1, 1))
    known.forget(("catalog", "a"))
    assert known.lookup([("catalog", "a")]) == {}
