"""Any history of writes, streams, scans, replays and redrives ends with the index equal to the table.

A property test over an in-memory model (issue 10): a table with a clock, streams that are
re-created (with sequence numbers that may restart lower), a reindex that scans and writes
later, verify repairs, deliveries of any record in any order (retries, bisection, replays of old
windows, dead-letter redrives), deletes and TTL deletes. The index applies exactly what the
planners decide, conditionally, as OpenSearch does. After the history every record not delivered
yet is delivered, in random order (delivery is at least once, not again at the end); the index
must then equal the table.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from syncer.config import TableConfig
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentWrite,
    ReadState,
    TargetState,
    Verdict,
    WriteKind,
    indexed_document,
)
from syncer.core.plan import plan_scanned, tombstone_body
from syncer.core.records import decode_record
from syncer.core.versions import (
    CLOCK_UNCERTAINTY_MS,
    Order,
    compare,
    read_version,
    version_from_meta,
)
from tests.helpers import plan_key

TABLE = TableConfig(name="catalog", index="catalog")
KEYS = ("a", "b")
SKEW_MS = CLOCK_UNCERTAINTY_MS - 100  # the reader's clock may be off by less than the margin


def _label(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"2026-01-01T{hours % 24:02d}:{minute:02d}:{second:02d}.{millis:03d}"


@dataclass
class World:
    """The table, its streams and the index, with one clock (milliseconds since a start)."""

    now_ms: int = 10_000_000
    table: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(KEYS))
    streams: list[tuple[str, int]] = field(default_factory=list)  # (label, next sequence)
    records: list[dict[str, Any]] = field(default_factory=list)
    # index name ("live", and "new" while a reindex runs) -> document id -> (source, _seq_no)
    indices: dict[str, dict[str, tuple[dict[str, Any], int]]] = field(
        default_factory=lambda: {"live": {}}
    )
    scanned_since_start: set[str] = field(default_factory=set)
    delivered: set[int] = field(default_factory=set)  # positions in ``records``
    version_counter: int = 0

    def new_stream(self, first_sequence: int) -> None:
        self.streams.append((_label(self.now_ms), first_sequence))

    def write(self, key: str, delete: bool, ttl: bool) -> None:
        before = self.table[key]
        if delete and before is None:
            return
        self.version_counter += 1
        after = None if delete else self.version_counter
        self.table[key] = after
        label, sequence = self.streams[-1]
        self.streams[-1] = (label, sequence + 7)
        event = "REMOVE" if delete else ("INSERT" if before is None else "MODIFY")
        body: dict[str, Any] = {
            "Keys": {"pk": {"S": key}},
            "SequenceNumber": str(sequence),
            "ApproximateCreationDateTime": self.now_ms // 1000,  # whole seconds, as in production
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if after is not None:
            body["NewImage"] = {"pk": {"S": key}, "v": {"N": str(after)}}
        if before is not None:
            body["OldImage"] = {"pk": {"S": key}, "v": {"N": str(before)}}
        record: dict[str, Any] = {
            "eventName": event,
            "eventSource": "aws:dynamodb",
            "eventSourceARN": f"arn:aws:dynamodb:us-east-1:1:table/catalog/stream/{label}",
            "dynamodb": body,
        }
        if delete and ttl:
            record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        self.records.append(record)

    def read(self, key: str, skew_ms: int) -> ReadState:
        """A consistent read now, its interval on the reader's (skewed) clock."""
        value = self.table[key]
        item = None if value is None else {"pk": key, "v": value}
        seen = self.now_ms + skew_ms
        return ReadState(item, read_version((seen - 3) / 1000, (seen + 3) / 1000))

    def target(self, key: str, index: str = "live") -> TargetState:
        held = self.indices[index].get(key)
        if held is None:
            return TargetState(index, None)
        source, seq_no = held
        return TargetState(index, indexed_document(source, seq_no, 1))

    def apply(self, key: str, decision: DocumentWrite | Verdict, expected: TargetState) -> None:
        """Write as OpenSearch would: only if the document is still the one planned against."""
        if not isinstance(decision, DocumentWrite):
            return
        index = self.indices[expected.index]
        if self.target(key, expected.index) != expected:
            return  # 409: a later round would plan again; the model re-delivers instead
        seq_no = (index[key][1] + 1) if key in index else 0
        index[key] = (dict(decision.body), seq_no)

    def deliver(self, records: list[dict[str, Any]], skew_ms: int) -> None:
        """A batch through the stream path: to the live index, and the reindex target if any."""
        changes = coalesce_latest_per_key([decode_record(r) for r in records])
        for change in changes:
            key = change.latest.keys["pk"]
            for index in list(self.indices):
                target = self.target(key, index)
                decision = plan_key(change, TABLE, target)
                if decision is Verdict.REREAD:
                    reread = self.read(key, skew_ms)
                    decision = plan_key(change, TABLE, target, reread=reread)
                self.apply(key, decision, target)

    def write_scanned(
        self, key: str, scanned: ReadState, skew_ms: int, index: str = "live"
    ) -> None:
        """A reindex page or a verify repair: a read state, written only over older ones."""
        if index not in self.indices:
            return  # the reindex it belonged to has finished
        target = self.target(key, index)
        decision = plan_scanned((index, key), TABLE, scanned, target, None)
        if decision is Verdict.REREAD:
            reread = self.read(key, skew_ms)
            decision = plan_scanned((index, key), TABLE, scanned, target, reread)
        self.apply(key, decision, target)

    def start_reindex(self, skew_ms: int) -> None:
        """A new empty index behind the reindex alias, and the live index's tombstones in it."""
        self.indices["new"] = {}
        self.scanned_since_start = set()
        for key, (source, _) in list(self.indices["live"].items()):
            meta = source[SYNCER_FIELD]
            if not meta["deleted"]:
                continue
            target = self.target(key, "new")
            version = version_from_meta(meta)
            order = compare(version, target.document.version if target.document else None)
            if order is Order.UNKNOWN:
                decision = plan_scanned(
                    ("new", key), TABLE, self.read(key, skew_ms), target, self.read(key, skew_ms)
                )
                self.apply(key, decision, target)
            elif order is Order.NEWER:
                body = tombstone_body(TABLE, version, bool(meta.get("ttl")))
                self.apply(
                    key,
                    DocumentWrite(("new", key), WriteKind.TOMBSTONE, body, target.document),
                    target,
                )

    def swap(self, skew_ms: int) -> None:
        """The scan reads every key it has not read yet, then the alias moves to the new index."""
        if "new" not in self.indices:
            return
        for key in KEYS:
            if key not in self.scanned_since_start:
                self.write_scanned(key, self.read(key, skew_ms), skew_ms, "new")
        self.indices["live"] = self.indices.pop("new")

    def live(self) -> dict[str, int]:
        return {
            key: source["v"]
            for key, (source, _) in self.indices["live"].items()
            if not source[SYNCER_FIELD]["deleted"]
        }

    def truth(self) -> dict[str, int]:
        return {key: value for key, value in self.table.items() if value is not None}


_STEP = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 2500)),
    st.tuples(st.just("write"), st.sampled_from(KEYS), st.booleans(), st.booleans()),
    st.tuples(st.just("new_stream"), st.integers(10**20, 10**21)),
    st.tuples(st.just("deliver"), st.integers(0, 10**6), st.integers(1, 4)),
    st.tuples(st.just("reindex"), st.integers(0, 1)),
    st.tuples(st.just("scan"), st.sampled_from(KEYS)),
    st.tuples(st.just("scan_written"), st.integers(0, 10**6)),
    st.tuples(st.just("swap"), st.integers(0, 1)),
    st.tuples(st.just("repair"), st.sampled_from(KEYS)),
)


REINDEX_THEN_OLD_REPLAY = [
    ("write", "a", False, False),
    ("tick", 300),
    ("write", "a", False, False),
    ("deliver", 0, 2),
    ("tick", 2500),
    ("reindex", 0),
    ("scan", "a"),
    ("scan_written", 0),
    ("deliver", 0, 1),
    ("swap", 0),
]
DELETE_REINDEX_REPLAY = [
    ("write", "b", False, False),
    ("tick", 1200),
    ("write", "b", True, True),
    ("deliver", 0, 2),
    ("reindex", 0),
    ("swap", 0),
    ("deliver", 0, 1),
]
# Two reads of one item on two clocks (a scan page, then a re-read): the earlier read, on a
# clock 7 ms ahead, looked later than the re-read that followed the insert, and its absence
# replaced the inserted item (found by hypothesis).
READS_ON_TWO_CLOCKS = [
    ("reindex", 0),
    ("tick", 0),
    ("scan", "a"),
    ("scan", "a"),
    ("write", "a", False, False),
    ("deliver", 0, 1),
]
NEW_STREAM_LOWER_NUMBERS = [
    ("write", "a", False, False),
    ("deliver", 0, 1),
    ("new_stream", 10**20),
    ("write", "a", False, False),
    ("deliver", 1, 1),
    ("deliver", 0, 1),
]
# The same on clocks 1.8 s apart (each off by 0.9 s, in opposite directions): a margin of one
# CLOCK_UNCERTAINTY_MS let the later absent scan pass for newer than the re-read; it takes two
# (found by this test, issue 19).
ABSENT_SCANS_TWO_CLOCKS = [
    ("reindex", 0),
    ("scan", "a"),
    ("scan", "a"),
    ("write", "a", False, False),
    ("deliver", 0, 1),
]


@settings(max_examples=1500, deadline=None)
@example(steps=REINDEX_THEN_OLD_REPLAY, skews=[0], final_order=random.Random(1))
@example(steps=REINDEX_THEN_OLD_REPLAY, skews=[SKEW_MS, -SKEW_MS], final_order=random.Random(1))
@example(steps=DELETE_REINDEX_REPLAY, skews=[0], final_order=random.Random(1))
@example(steps=NEW_STREAM_LOWER_NUMBERS, skews=[0], final_order=random.Random(1))
@example(steps=ABSENT_SCANS_TWO_CLOCKS, skews=[-SKEW_MS, 0, SKEW_MS], final_order=random.Random(1))
@example(steps=READS_ON_TWO_CLOCKS, skews=[0, 7], final_order=random.Random(1))
@given(
    steps=st.lists(_STEP, min_size=4, max_size=40),
    skews=st.lists(st.integers(-SKEW_MS, SKEW_MS), min_size=1, max_size=8),
    final_order=st.randoms(use_true_random=False),
)
def test_any_history_ends_with_the_index_equal_to_the_table(
    steps: list[tuple[Any, ...]], skews: list[int], final_order: Any
) -> None:
    """Whatever happens in between, once every record was delivered the index equals the table."""
    world = World()
    world.new_stream(10**21)
    pending_scans: list[tuple[str, ReadState]] = []
    for number, step in enumerate(steps):
        skew = skews[number % len(skews)]
        kind = step[0]
        if kind == "tick":
            world.now_ms += step[1]
        elif kind == "write":
            world.write(step[1], delete=step[2], ttl=step[3])
        elif kind == "new_stream":
            world.now_ms += 1000  # disabling and enabling a stream takes a moment
            world.new_stream(step[1])
        elif kind == "deliver" and world.records:
            start = step[1] % len(world.records)
            world.delivered.update(range(start, min(start + step[2], len(world.records))))
            world.deliver(world.records[start : start + step[2]], skew)
        elif kind == "reindex" and "new" not in world.indices:
            world.start_reindex(skew)
        elif kind == "scan" and "new" in world.indices:  # read now, written later
            world.scanned_since_start.add(step[1])
            pending_scans.append((step[1], world.read(step[1], skew)))
        elif kind == "scan_written" and pending_scans:
            key, scanned = pending_scans.pop(step[1] % len(pending_scans))
            world.write_scanned(key, scanned, skew, "new")
        elif kind == "swap" and not pending_scans:
            world.swap(skew)
        elif kind == "repair":  # verify --repair: read now, write at once
            world.write_scanned(step[1], world.read(step[1], skew), skew)
    for key, scanned in pending_scans:  # a running reindex finishes its pages and swaps
        world.write_scanned(key, scanned, skews[0], "new")
    world.swap(skews[0])
    world.now_ms += 1
    rest = [r for n, r in enumerate(world.records) if n not in world.delivered]
    final_order.shuffle(rest)
    for record in rest:
        world.deliver([record], skews[-1])
    assert world.live() == world.truth()
