"""KnownStates: bounded, oldest out first, a written state kept ready to plan against."""

from __future__ import annotations

from typing import Any

from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentWrite,
    TargetState,
    WriteKind,
    indexed_document,
)
from syncer.core.known import KnownStates
from syncer.core.versions import Version

KEPT = (SYNCER_FIELD, "category")


def _source(seq: int) -> dict[str, Any]:
    return {SYNCER_FIELD: {"table": "t", "seq": str(seq).zfill(40)}, "category": "shoes"}


def _written(
    known: KnownStates,
    doc_id: str,
    body: dict[str, Any],
    seq_no: int,
    kept: tuple[str, ...] = KEPT,
    version: Version | None = None,
    kind: WriteKind = WriteKind.INDEX,
) -> None:
    write = DocumentWrite(("catalog-1", doc_id), kind, body, None, version)
    answer = {"_index": "catalog-1", "_seq_no": seq_no, "_primary_term": 3}
    known.remember_written([("catalog", doc_id)], write, answer, kept)


def test_the_oldest_state_goes_first_and_a_kept_one_moves_to_the_newest_end() -> None:
    known = KnownStates(capacity=2)
    for doc_id in ("a", "b"):
        _written(known, doc_id, _source(1), 1)
    _written(known, "a", _source(2), 2)  # a is newest now
    _written(known, "c", _source(3), 3)  # b goes
    assert set(known.lookup([("catalog", x) for x in "abc"])) == {
        ("catalog", "a"),
        ("catalog", "c"),
    }
    assert len(known) == 2


def test_a_full_store_keeps_exactly_the_newest_states_through_much_churn() -> None:
    """Against a plain model: the newest ``capacity`` ids written and not forgotten since."""
    known, model = KnownStates(capacity=100), list[str]()
    for n in range(1_000):
        doc_id = f"d{n % 400}"  # ids come back: a kept one moves to the newest end
        _written(known, doc_id, _source(n), n)
        model = [*(m for m in model if m != doc_id), doc_id][-100:]
        if n % 3 == 0:
            gone = f"d{(n - 50) % 400}"
            known.forget(("catalog", gone))
            model = [m for m in model if m != gone]
    kept = known.lookup(("catalog", f"d{n}") for n in range(400))
    assert sorted(ref[1] for ref in kept) == sorted(model)
    assert len(known) == len(model)


def test_a_written_state_is_what_a_read_would_give_without_its_syncer_object() -> None:
    known = KnownStates()
    body = {**_source(7), "name": "boot", "price": 12}  # the whole body written
    _written(known, "a", body, 12, (*KEPT, "brand"))
    (state,) = known.lookup([("catalog", "a")]).values()
    assert state.index == "catalog-1"
    assert state.known
    # what an _mget reads back (no brand), but for _syncer: its version and deleted flag are
    # taken out of it, and its object is not kept
    read = indexed_document(_source(7), 12, 3)
    assert state.document.fields == {"category": "shoes"}
    assert (state.document.version, state.document.deleted) == (read.version, read.deleted)
    assert state.document.version.seq == 7
    assert (state.document.seq_no, state.document.primary_term) == (12, 3)


def test_the_version_a_planner_gave_its_write_is_kept_as_it_is() -> None:
    known = KnownStates()
    version = Version(seq=7, stream_ms=1_700_000_000_000)
    tombstone = {SYNCER_FIELD: {"table": "t", "deleted": True, **version.to_meta()}}
    _written(known, "a", tombstone, 12, version=version, kind=WriteKind.TOMBSTONE)
    (state,) = known.lookup([("catalog", "a")]).values()
    assert state.document is not None
    assert state.document.version is version
    assert state.document.deleted
    assert state.document.fields == {}


def test_nothing_is_kept_at_capacity_zero_and_forget_drops_a_state() -> None:
    off = KnownStates(capacity=0)
    _written(off, "a", _source(1), 1)
    off.remember(("catalog", "a"), "catalog-1", indexed_document(_source(1), 1, 1))
    assert off.lookup([("catalog", "a")]) == {}
    known = KnownStates()
    known.remember(("catalog", "a"), "catalog-1", indexed_document(_source(1), 1, 1))
    assert known.lookup([("catalog", "a")]) == {
        ("catalog", "a"): TargetState("catalog-1", indexed_document(_source(1), 1, 1), True)
    }
    known.forget(("catalog", "a"))
    assert known.lookup([("catalog", "a")]) == {}
