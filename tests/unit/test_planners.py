"""The planners of core/planners.py as tables: indexed state and input in, decision out."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.config import Route, RouteMatch, TableConfig
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.planners import ChangePlanner, plan_read_state, plan_scanned, plan_tombstone
from syncer.core.versions import Version
from syncer.core.work import KeyWork

TABLE = TableConfig(name="catalog", index="catalog", exclude_attributes=frozenset({"cost"}))
STREAM_MS = 1704067200000  # the unit conftest's stream label
SECOND_MS = 1704067200000  # the unit conftest's ApproximateCreationDateTime, in ms
SEQ = 111000000000000000057
REF = ("catalog", "p-1|v1")


def _indexed(version: Version, deleted: bool = False) -> IndexedDocument:
    return IndexedDocument(version, deleted, seq_no=4, primary_term=1, fields={})


def _kind(decision: DocumentWrite | Verdict) -> str:
    if isinstance(decision, Verdict):
        return decision.value
    return decision.kind.value


CHANGE = Version(seq=SEQ, stream_ms=STREAM_MS, changed_at_ms=SECOND_MS)
READ_LONG_AFTER = Version(read_from_ms=SECOND_MS + 10_000, read_to_ms=SECOND_MS + 10_100)
READ_AT_THE_SAME_TIME = Version(read_from_ms=SECOND_MS + 100, read_to_ms=SECOND_MS + 200)
READ_LONG_BEFORE = Version(read_from_ms=SECOND_MS - 10_000, read_to_ms=SECOND_MS - 9_900)


@pytest.mark.parametrize(
    ("event", "indexed", "expected"),
    [
        ("MODIFY", None, "index"),
        ("MODIFY", _indexed(Version(seq=SEQ - 1, stream_ms=STREAM_MS)), "index"),
        ("MODIFY", _indexed(Version(seq=SEQ, stream_ms=STREAM_MS)), "skip"),
        ("MODIFY", _indexed(Version(seq=SEQ + 1, stream_ms=STREAM_MS)), "skip"),
        ("MODIFY", _indexed(Version(seq=1, stream_ms=STREAM_MS + 1)), "skip"),
        ("MODIFY", _indexed(Version(seq=SEQ * 10, stream_ms=STREAM_MS - 1)), "index"),
        ("MODIFY", _indexed(READ_LONG_AFTER), "skip"),
        ("MODIFY", _indexed(READ_AT_THE_SAME_TIME), "reread"),
        ("MODIFY", _indexed(READ_LONG_BEFORE), "index"),
        ("REMOVE", None, "tombstone"),
        ("REMOVE", _indexed(Version(seq=SEQ - 1, stream_ms=STREAM_MS)), "tombstone"),
        ("REMOVE", _indexed(Version(seq=SEQ + 1, stream_ms=STREAM_MS), deleted=True), "skip"),
        ("REMOVE", _indexed(READ_AT_THE_SAME_TIME), "reread"),
    ],
)
def test_change_planner(make_record, event: str, indexed: IndexedDocument | None, expected) -> None:
    """The stream's planner writes a change only over an older state, re-reads when unsure."""
    # given a key's change and the indexed state of its document
    new = None if event == "REMOVE" else {"name": "boot", "cost": 3}
    (change,) = coalesce_latest_per_key([make_record(event, SEQ, new=new)])
    work = KeyWork.start(change, TABLE)
    # when the batch's planner plans the document
    decision = ChangePlanner([work])(REF, TargetState("catalog-000001", indexed), None)
    # then it writes, skips or asks for a re-read, conditional on what it saw
    assert _kind(decision) == expected
    if isinstance(decision, DocumentWrite):
        assert decision.ref == ("catalog-000001", "p-1|v1")
        assert decision.expected is indexed
        assert "cost" not in decision.body
        assert decision.body[SYNCER_FIELD]["deleted"] is (event == "REMOVE")


def test_change_planner_writes_what_a_reread_found(make_record) -> None:
    """After a re-read the planner writes the read state, with the read's version."""
    # given a change whose order against the indexed read is unknown, and a fresh read
    (change,) = coalesce_latest_per_key([make_record("MODIFY", SEQ, new={"name": "boot"})])
    planner = ChangePlanner([KeyWork.start(change, TABLE)])
    target = TargetState("catalog-000001", _indexed(READ_AT_THE_SAME_TIME))
    read = ReadState({"pk": "p-1", "sk": "v1", "name": "shoe"}, READ_LONG_AFTER)
    # when it plans again with the read
    decision = planner(REF, target, read)
    # then the read item is written with the read's interval
    assert isinstance(decision, DocumentWrite)
    assert decision.body["name"] == "shoe"
    assert decision.body[SYNCER_FIELD]["read_from"] == READ_LONG_AFTER.read_from_ms


@pytest.mark.parametrize(
    ("indexed", "expected"),
    [
        (None, "tombstone"),
        (_indexed(CHANGE, deleted=True), "tombstone"),
        (_indexed(READ_AT_THE_SAME_TIME, deleted=True), "tombstone"),
        (
            _indexed(Version(read_from_ms=SECOND_MS + 20_000, read_to_ms=SECOND_MS + 20_100), True),
            "skip",
        ),
    ],
)
def test_a_reread_that_finds_the_item_gone_leaves_a_tombstone_as_new_as_the_read(
    make_record, indexed: IndexedDocument | None, expected: str
) -> None:
    """A re-read finding the item gone replaces an older tombstone with one of its own version.

    Failed on the old code (an older tombstone was kept, SKIP): a change between the two,
    delivered again later, then brought the item back (tests/unit/test_kinesis_versions.py's
    property found it: a REMOVE, then a batch whose re-read found the item gone, then a put of
    that batch's millisecond)."""
    # given a change whose re-read finds the item gone, and the indexed state
    (change,) = coalesce_latest_per_key([make_record("MODIFY", SEQ, new={"name": "boot"})])
    planner = ChangePlanner([KeyWork.start(change, TABLE)])
    target = TargetState("catalog-000001", indexed)
    # when the planner plans with the read
    decision = planner(REF, target, ReadState(None, READ_LONG_AFTER))
    # then the index gets a tombstone with the read's version, unless it holds one as new
    assert _kind(decision) == expected
    if isinstance(decision, DocumentWrite):
        assert decision.expected is indexed
        assert decision.body[SYNCER_FIELD]["deleted"] is True
        assert decision.body[SYNCER_FIELD]["read_from"] == READ_LONG_AFTER.read_from_ms


def test_change_planner_routes_once_for_every_ref(make_record) -> None:
    """Each route's index gets the document where the state belongs, a tombstone elsewhere."""
    # given a routed table and a change selected by its first route
    routes = (
        Route(index="boots", match=RouteMatch("name", "equals", "boot")),
        Route(index="others"),
    )
    table = TableConfig(name="catalog", index="", routes=routes)
    (change,) = coalesce_latest_per_key([make_record("MODIFY", SEQ, new={"name": "boot"})])
    work = KeyWork.start(change, table)
    planner = ChangePlanner([work])
    # when every ref of the key is planned against absent documents
    kinds = {ref: _kind(planner(ref, TargetState(ref[0], None), None)) for ref in work.refs}
    # then its route gets the document (and its reindex alias too), the others tombstones
    assert kinds == {
        ("boots", "p-1|v1"): "index",
        ("boots-reindexing", "p-1|v1"): "index",
        ("others", "p-1|v1"): "tombstone",
        ("others-reindexing", "p-1|v1"): "tombstone",
    }


ITEM: dict[str, Any] = {"pk": "p-1", "sk": "v1", "name": "boot"}


@pytest.mark.parametrize(
    ("read", "indexed", "expected"),
    [
        (ReadState(ITEM, READ_LONG_AFTER), None, "index"),
        (ReadState(ITEM, READ_LONG_AFTER), _indexed(CHANGE), "index"),
        (ReadState(ITEM, READ_LONG_BEFORE), _indexed(CHANGE), "skip"),
        (ReadState(ITEM, READ_AT_THE_SAME_TIME), _indexed(CHANGE), "reread"),
        (ReadState(None, READ_LONG_AFTER), _indexed(CHANGE), "tombstone"),
        (ReadState(None, READ_LONG_AFTER), None, "skip"),
        (ReadState(None, READ_LONG_AFTER), _indexed(CHANGE, deleted=True), "skip"),
    ],
)
def test_scan_planner(read: ReadState, indexed: IndexedDocument | None, expected: str) -> None:
    """A state read from the table replaces only an older one; an absent read tombstones."""
    # given a scanned state and the indexed one
    target = TargetState("catalog-000001", indexed)
    # when the scan planner plans it
    decision = plan_scanned(REF, TABLE, read, target, None)
    # then it writes, skips or asks for a re-read
    assert _kind(decision) == expected


def test_read_planner_writes_a_reread_over_what_it_saw() -> None:
    """A re-read is written conditional on the indexed state alone, whatever its version."""
    # given an indexed change and a re-read made after it was seen
    indexed = _indexed(CHANGE)
    # when the read planner plans it
    decision = plan_read_state(REF, TABLE, ReadState(ITEM, READ_AT_THE_SAME_TIME), indexed)
    # then the read is written over exactly that state
    assert isinstance(decision, DocumentWrite)
    assert decision.expected is indexed
    assert decision.kind is WriteKind.INDEX


@pytest.mark.parametrize(
    ("indexed", "expected"),
    [
        (None, "tombstone"),
        (_indexed(Version(seq=SEQ - 1, stream_ms=STREAM_MS)), "tombstone"),
        (_indexed(Version(seq=SEQ + 1, stream_ms=STREAM_MS)), "skip"),
        (_indexed(CHANGE, deleted=True), "skip"),
        (_indexed(READ_AT_THE_SAME_TIME), "reread"),
    ],
)
def test_tombstone_planner(indexed: IndexedDocument | None, expected: str) -> None:
    """A carried tombstone replaces only an older state, and keeps its own version and ttl."""
    # given a tombstone of a change and an indexed state
    target = TargetState("catalog-000002", indexed)
    # when the tombstone planner plans it
    decision = plan_tombstone(REF, TABLE, CHANGE, target, ttl=True)
    # then it is written only over an older state
    assert _kind(decision) == expected
    if isinstance(decision, DocumentWrite):
        assert decision.body[SYNCER_FIELD]["ttl"] is True
        assert decision.body[SYNCER_FIELD]["seq"] == str(SEQ).zfill(40)
