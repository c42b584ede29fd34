"""The commands' planners (core/command_planners.py) as tables: the indexed state and what the
command read in, the decision out; no server, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from syncer.config import Route, RouteMatch, TableConfig
from syncer.core.bodies import document_body, tombstone_body
from syncer.core.command_planners import (
    ALREADY_HELD,
    BackfillPlanner,
    BackfillState,
    CarriedTombstonePlanner,
    CarryPlanner,
    KeepOldPlanner,
    NewerInOldPlanner,
    PurgePlanner,
    RepairPlanner,
    RereadPlanner,
    ScanPlanner,
    StrayPlanner,
    plan_purge,
    route_named,
    routed_read,
    same_read,
)
from syncer.core.documents import (
    SYNCER_FIELD,
    Decision,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    TargetState,
    Verdict,
)
from syncer.core.exports import ExportLine
from syncer.core.versions import Version

TABLE = TableConfig(name="catalog", index="catalog")
ROUTED = TableConfig(
    name="catalog",
    index="",
    routes=(
        Route(index="boots", match=RouteMatch("kind", "equals", "boot")),
        Route(index="others"),
    ),
)
STREAM_MS = 1704067200000
SEQ = 111000000000000000057
CHANGE = Version(seq=SEQ, stream_ms=STREAM_MS, changed_at_ms=STREAM_MS)
OLDER_CHANGE = Version(seq=SEQ - 1, stream_ms=STREAM_MS, changed_at_ms=STREAM_MS)
NEWER_CHANGE = Version(seq=SEQ + 1, stream_ms=STREAM_MS, changed_at_ms=STREAM_MS)
READ_BEFORE = Version(read_from_ms=STREAM_MS - 10_000, read_to_ms=STREAM_MS - 9_900)
READ_AFTER = Version(read_from_ms=STREAM_MS + 10_000, read_to_ms=STREAM_MS + 10_100)
READ_SAME_TIME = Version(read_from_ms=STREAM_MS - 100, read_to_ms=STREAM_MS + 100)
REF = ("catalog", "p-1|v1")
ITEM = {"pk": "p-1", "sk": "v1", "kind": "boot"}


def indexed(version: Version, deleted: bool = False) -> IndexedDocument:
    return IndexedDocument(version, deleted, seq_no=4, primary_term=1, fields={})


def target(version: Version | None, deleted: bool = False, index: str = "catalog") -> TargetState:
    return TargetState(index, None if version is None else indexed(version, deleted))


def kind(decision: Decision) -> str:
    return decision.value if isinstance(decision, Verdict) else decision.kind.value


def body_of(decision: Decision) -> Mapping[str, Any]:
    assert isinstance(decision, DocumentWrite)
    return decision.body


def old_source(version: Version, deleted: bool = False, **fields: Any) -> dict[str, Any]:
    """An old index's document: its fields and the ``_syncer`` of ``version``."""
    if deleted:
        return tombstone_body(TABLE, version)
    return document_body({"pk": "p-1", "sk": "v1", **fields}, TABLE, version)


# ScanPlanner: a scanned (or exported) state into a new index


@pytest.mark.parametrize(
    ("scanned", "held", "reread", "expected"),
    [
        (READ_AFTER, None, None, "index"),  # nothing there: the scanned state is written
        (READ_BEFORE, CHANGE, None, "skip"),  # the stream wrote a newer change since
        (READ_AFTER, READ_BEFORE, None, "index"),  # over an older read
        (READ_SAME_TIME, READ_SAME_TIME, None, "reread"),  # cannot be ordered: read again
        (READ_SAME_TIME, READ_SAME_TIME, ReadState(ITEM, READ_AFTER), "index"),  # as found
        (READ_SAME_TIME, READ_SAME_TIME, ReadState(None, READ_AFTER), "tombstone"),  # gone
        (READ_SAME_TIME, READ_SAME_TIME, ALREADY_HELD, "skip"),  # a retried item's own write
    ],
)
def test_scan_planner(
    scanned: Version, held: Version | None, reread: ReadState | None, expected: str
) -> None:
    """A scanned state replaces only an older one; an unordered one is read again."""
    shapes = {"catalog": routed_read(TABLE, TABLE.resolved_routes[0])}
    planner = ScanPlanner({REF: ReadState(ITEM, scanned)}, {REF: TABLE}, shapes)
    assert kind(planner(REF, target(held), reread)) == expected


def test_scan_planner_shapes_a_reread_for_the_ref_index() -> None:
    """A re-read item that moved to another route is a tombstone in this route's index."""
    boots = ("boots-reindexing", "p-1|v1")
    shapes = {"boots-reindexing": routed_read(ROUTED, route_named(ROUTED, "boots"))}
    planner = ScanPlanner({boots: ReadState(ITEM, READ_SAME_TIME)}, {boots: ROUTED}, shapes)
    moved = ReadState({**ITEM, "kind": "hat"}, READ_AFTER)
    decision = planner(boots, target(READ_SAME_TIME, index="boots-000002"), moved)
    assert kind(decision) == "tombstone"


# RepairPlanner / StrayPlanner: verify --repair


@pytest.mark.parametrize(
    ("ref_index", "held", "expected"),
    [
        ("boots", None, "index"),  # its route's index lacked it
        ("boots", READ_BEFORE, "index"),  # or held an older state
        ("boots", CHANGE, "skip"),  # a newer stream change won
        ("others", READ_BEFORE, "tombstone"),  # the other route's index held it: hidden
        ("others", None, "skip"),  # and nothing there: nothing to hide
    ],
)
def test_repair_planner(ref_index: str, held: Version | None, expected: str) -> None:
    """Each route's index gets what the consistent read makes there, over older states only."""
    read = ReadState(ITEM, READ_BEFORE if held is CHANGE else READ_AFTER)
    planner = RepairPlanner(ROUTED, {"p-1|v1": read})
    assert kind(planner((ref_index, "p-1|v1"), target(held, index=ref_index), None)) == expected


def test_repair_planner_routes_a_reread_once_per_read() -> None:
    """A re-read is routed once for all the key's refs, and decides where the item goes."""
    planner = RepairPlanner(ROUTED, {"p-1|v1": ReadState(ITEM, READ_SAME_TIME)})
    again = ReadState({**ITEM, "kind": "hat"}, READ_AFTER)
    boots = planner(("boots", "p-1|v1"), target(READ_SAME_TIME, index="boots"), again)
    others = planner(("others", "p-1|v1"), target(None, index="others"), again)
    assert (kind(boots), kind(others)) == ("tombstone", "index")
    assert len(planner._routed) == 1


@pytest.mark.parametrize(
    ("absent", "held", "expected"),
    [
        (READ_AFTER, READ_BEFORE, "tombstone"),  # the scan found no item, after this state
        (READ_BEFORE, CHANGE, "skip"),  # written after the scan: left alone
        (READ_AFTER, None, "skip"),  # nothing there
        (READ_SAME_TIME, READ_SAME_TIME, "reread"),  # unordered: its rereader refuses
    ],
)
def test_stray_planner(absent: Version, held: Version | None, expected: str) -> None:
    """A stray is tombstoned with the scan's version unless something newer is there."""
    assert kind(StrayPlanner(TABLE, absent)(REF, target(held), None)) == expected


# PurgePlanner: purge-tombstones

CUTOFF_MS = STREAM_MS + 1


@pytest.mark.parametrize(
    ("state", "expected", "replaced"),
    [
        (None, "skip", False),  # already gone
        (indexed(CHANGE, deleted=True), "delete", False),  # an old tombstone
        (indexed(CHANGE), "skip", True),  # a live document now: a newer change
        (indexed(Version(seq=SEQ, changed_at_ms=CUTOFF_MS), deleted=True), "skip", True),
        (indexed(Version(seq=SEQ), deleted=True), "skip", True),  # no time: never purged
    ],
)
def test_purge_planner(state: IndexedDocument | None, expected: str, replaced: bool) -> None:
    """Only a tombstone still older than the cutoff is deleted; what replaced one is counted."""
    planner = PurgePlanner(CUTOFF_MS)
    decision = planner(REF, TargetState("catalog-000001", state), None)
    assert kind(decision) == expected
    assert (REF in planner.replaced) is replaced
    assert kind(plan_purge(TargetState("i", state), REF, CUTOFF_MS)) == expected


# CarriedTombstonePlanner / NewerInOldPlanner: the settle phases


@pytest.mark.parametrize(
    ("held", "ttl", "expected"),
    [(None, False, "tombstone"), (READ_BEFORE, True, "tombstone"), (NEWER_CHANGE, False, "skip")],
)
def test_carried_tombstone_planner(held: Version | None, ttl: bool, expected: str) -> None:
    """A carried tombstone is written over nothing or an older state, keeping its TTL flag."""
    meta = {**CHANGE.to_meta(), "deleted": True, "ttl": ttl}
    planner = CarriedTombstonePlanner(TABLE, {REF: meta})
    decision = planner(REF, target(held), None)
    assert kind(decision) == expected
    if expected == "tombstone":
        assert body_of(decision)[SYNCER_FIELD].get("ttl", False) is ttl


def test_carried_tombstone_planner_writes_a_reread_as_found() -> None:
    """After a re-read, the item as the table holds it now."""
    planner = CarriedTombstonePlanner(TABLE, {REF: {**CHANGE.to_meta(), "deleted": True}})
    decision = planner(REF, target(READ_SAME_TIME), ReadState(ITEM, READ_AFTER))
    assert kind(decision) == "index"


@pytest.mark.parametrize(
    ("old", "held", "reread", "expected"),
    [
        (CHANGE, NEWER_CHANGE, None, "skip"),  # the new index is as new: left
        (CHANGE, CHANGE, None, "skip"),
        (NEWER_CHANGE, CHANGE, None, "reread"),  # the old index is newer: read again
        (CHANGE, None, None, "reread"),  # absent in the new index
        (CHANGE, None, ReadState(None, READ_AFTER), "tombstone"),  # gone: kept as a tombstone
        (CHANGE, None, ReadState(ITEM, READ_AFTER), "index"),
        (CHANGE, READ_BEFORE, ReadState(ITEM, READ_AFTER), "index"),
    ],
)
def test_newer_in_old_planner(
    old: Version, held: Version | None, reread: ReadState | None, expected: str
) -> None:
    """What the old index holds newer is read again and written as found."""
    planner = NewerInOldPlanner(TABLE, {REF: old})
    assert kind(planner(REF, target(held), reread)) == expected


# CarryPlanner: an export's settle phase

EXPORT = Version(read_from_ms=STREAM_MS - 1_000, read_to_ms=STREAM_MS + 1_000)


@pytest.mark.parametrize(
    ("old", "held", "reread", "expected"),
    [
        (CHANGE, READ_BEFORE, None, "index"),  # held older: the old document
        (CHANGE, NEWER_CHANGE, None, "skip"),  # held newer: left
        (READ_BEFORE, None, None, "tombstone"),  # older than the export, absent from it: gone
        (READ_AFTER, None, None, "index"),  # learned after the export read: kept
        (CHANGE, None, None, "reread"),  # inside the export's read: cannot tell
        (CHANGE, None, ReadState(None, READ_AFTER), "tombstone"),
        (CHANGE, None, ReadState(ITEM, READ_AFTER), "index"),
    ],
)
def test_carry_planner(
    old: Version, held: Version | None, reread: ReadState | None, expected: str
) -> None:
    """The old index's live document against the new index's state and the export's read."""
    planner = CarryPlanner(TABLE, {REF: old_source(old, name="boot")}, EXPORT)
    decision = planner(REF, target(held), reread)
    assert kind(decision) == expected
    if expected == "tombstone" and reread is None:
        assert body_of(decision)[SYNCER_FIELD] == tombstone_body(TABLE, EXPORT)[SYNCER_FIELD]


# RereadPlanner / KeepOldPlanner: export lines that could not be loaded


def test_reread_planner_asks_the_table_then_writes_what_it_found() -> None:
    """Nothing from the export: a re-read first, then the item as found, per route."""
    shapes = {"boots": routed_read(ROUTED, route_named(ROUTED, "boots"))}
    planner = RereadPlanner({"boots": ROUTED.route_table(route_named(ROUTED, "boots"))}, shapes)
    ref = ("boots", "p-1|v1")
    assert planner(ref, target(None, index="boots"), None) is Verdict.REREAD
    found = planner(ref, target(None, index="boots"), ReadState(ITEM, READ_AFTER))
    assert kind(found) == "index"
    moved = ReadState({**ITEM, "kind": "hat"}, READ_AFTER)
    assert kind(planner(ref, target(READ_BEFORE, index="boots"), moved)) == "tombstone"


@pytest.mark.parametrize(
    ("old", "deleted", "held", "expected"),
    [
        (CHANGE, False, None, "index"),  # kept as the old index held it
        (CHANGE, True, None, "tombstone"),
        (NEWER_CHANGE, False, CHANGE, "index"),  # the old state is newer
        (CHANGE, False, CHANGE, "skip"),  # a stream change reached the new index since
        (CHANGE, False, NEWER_CHANGE, "skip"),
    ],
)
def test_keep_old_planner(old: Version, deleted: bool, held: Version | None, expected: str) -> None:
    """The old document is kept unless the new index holds something as new."""
    source = old_source(old, deleted, name="boot")
    decision = KeepOldPlanner({REF: source})(REF, target(held), None)
    assert kind(decision) == expected
    if isinstance(decision, DocumentWrite):
        assert decision.body is source


# BackfillPlanner: an export line applied to the live index


def line(version: Version, item: Mapping[str, Any] | None) -> ExportLine:
    keys = {"pk": {"S": "p-1"}, "sk": {"S": "v1"}}
    image = None if item is None else {k: {"S": v} for k, v in item.items()}
    return ExportLine(keys, image, None, version)


def backfill_state(
    version: Version, item: Mapping[str, Any] | None, deleted: bool
) -> BackfillState:
    return BackfillState(TABLE.resolved_routes[0], item, deleted, line(version, item), ())


@pytest.mark.parametrize(
    ("state", "held", "reread", "expected", "held_newer"),
    [
        (backfill_state(CHANGE, ITEM, False), None, None, "index", False),
        (backfill_state(NEWER_CHANGE, ITEM, False), CHANGE, None, "index", False),
        (backfill_state(CHANGE, ITEM, False), NEWER_CHANGE, None, "skip", True),
        (
            backfill_state(CHANGE, None, True),
            OLDER_CHANGE,
            None,
            "tombstone",
            False,
        ),
        (backfill_state(CHANGE, None, True), None, None, "tombstone", False),  # a delete
        (backfill_state(CHANGE, None, False), None, None, "skip", False),  # routed elsewhere
        (backfill_state(READ_SAME_TIME, ITEM, False), READ_SAME_TIME, None, "reread", False),
        (backfill_state(READ_SAME_TIME, ITEM, False), READ_SAME_TIME, ALREADY_HELD, "skip", True),
        (
            backfill_state(READ_SAME_TIME, ITEM, False),
            READ_SAME_TIME,
            ReadState(None, READ_AFTER),
            "tombstone",
            False,
        ),
    ],
)
def test_backfill_planner(
    state: BackfillState,
    held: Version | None,
    reread: ReadState | None,
    expected: str,
    held_newer: bool,
) -> None:
    """A line is written only over an older state; a delete leaves a tombstone; a state the
    index holds (or a newer one) is counted as held."""
    planner = BackfillPlanner(TABLE, {REF: state})
    assert kind(planner(REF, target(held), reread)) == expected
    assert (REF in planner.held) is held_newer


@pytest.mark.parametrize(
    ("held", "version", "expected"),
    [
        (None, READ_AFTER, False),
        (READ_AFTER, READ_AFTER, True),
        (READ_AFTER, READ_BEFORE, False),
        (CHANGE, READ_AFTER, False),
    ],
)
def test_same_read(held: Version | None, version: Version, expected: bool) -> None:
    """Only a document of exactly the same read interval is a work item's own write."""
    assert same_read(None if held is None else indexed(held), version) is expected
