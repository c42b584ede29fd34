"""The one version order of every document and tombstone, whichever path wrote it (pure).

A document's state came either from a stream change or from reading the table (a reindex
scan, a verify repair, or a re-read that settled an uncertain comparison). Both carry a
``Version``; ``compare`` orders any two of them (docs/ordering.md):

- two changes of one stream: by sequence number, compared as integers (any digit count);
- two changes of different streams of one table: by the stream's creation time, the label at
  the end of its ARN, so a newer stream always wins;
- a change against a read of the table: by ``ApproximateCreationDateTime`` (whole seconds)
  against the interval in which the read happened, with ``CLOCK_UNCERTAINTY_MS`` of slack; when
  the two can overlap the answer is ``UNKNOWN`` and the writer re-reads the item (a consistent
  read made after it saw the indexed state) instead of guessing;
- two reads: by their intervals, ``UNKNOWN`` when they overlap or lie within the clock slack;
- a change delivered through Kinesis Data Streams (rule 5): by its ``ApproximateCreationDateTime``
  in microseconds, an interval (a millisecond value ``t`` covers ``[t*1000, t*1000+999]``); two
  Kinesis changes are ordered when their intervals are disjoint, a duplicate (same eventID, same
  time) is OLDER, anything else is ``UNKNOWN``; against a read or a DynamoDB Streams change (a
  table that switched sources) it is an interval on DynamoDB's clock, compared with the margin.

Documents written before versions existed still order: one with a sequence number and no stream
counts as written by the stream of the change it meets (by sequence number, as before); one with
neither (an old scan) loses to everything.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

SEQUENCE_DIGITS = 40
# How far syncer's clock and DynamoDB's may disagree. A wider margin only costs more re-reads.
CLOCK_UNCERTAINTY_MS = 1000
_SECOND_MS = 1000
_MS_US = 1000
_SECOND_US = 1_000_000
_STREAM_LABEL = re.compile(r"/stream/(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)$")


class Order(Enum):
    NEWER = "newer"
    OLDER = "older"  # older or the same state: nothing to write
    UNKNOWN = "unknown"  # cannot tell from the versions: read the item again


@dataclass(frozen=True, slots=True)
class Version:
    """Where a document's state came from; see the module docstring for the order."""

    seq: int | None = None  # the change's sequence number
    stream_ms: int | None = None  # the change's stream creation time (its ARN label)
    changed_at_ms: int | None = None  # the change's ApproximateCreationDateTime
    read_from_ms: int | None = None  # a read of the table started at or after this time
    read_to_ms: int | None = None  # ... and had ended by this time
    # A change delivered through Kinesis: its ApproximateCreationDateTime as an interval of
    # epoch microseconds (both ends included), and DynamoDB's eventID (a duplicate has the same).
    change_from_us: int | None = None
    change_to_us: int | None = None
    event_id: str | None = None

    @property
    def is_read(self) -> bool:
        return self.read_from_ms is not None and self.read_to_ms is not None

    @property
    def is_kinesis(self) -> bool:
        """A change delivered through Kinesis Data Streams: ordered by its time, not a number."""
        return self.change_from_us is not None and self.change_to_us is not None

    @property
    def is_change(self) -> bool:
        return (self.seq is not None or self.is_kinesis) and not self.is_read

    def to_meta(self) -> dict[str, Any]:
        """The version fields of ``_syncer`` (numbers that fit a long, seq as padded text)."""
        meta: dict[str, Any] = {}
        if self.seq is not None:
            meta["seq"] = padded_sequence(self.seq)
        if self.stream_ms is not None:
            meta["stream"] = self.stream_ms
        if self.changed_at_ms is not None:
            meta["changed_at"] = self.changed_at_ms
        if self.read_from_ms is not None:
            meta["read_from"] = self.read_from_ms
            meta["scanned_at"] = self.read_from_ms  # the name earlier versions used
            # When the state was current: purge-tombstones and reindex ages go by this field.
            meta.setdefault("changed_at", self.read_from_ms)
        if self.read_to_ms is not None:
            meta["read_to"] = self.read_to_ms
        if self.change_from_us is not None:
            meta["change_from_us"] = self.change_from_us
        if self.change_to_us is not None:
            meta["change_to_us"] = self.change_to_us
        if self.event_id is not None:
            meta["event_id"] = self.event_id
        return meta


def change_version(
    sequence_number: int, stream_arn: object, approximate_creation_s: float | None
) -> Version:
    """The version of a stream change."""
    changed_at = None if approximate_creation_s is None else int(approximate_creation_s * 1000)
    return Version(
        seq=sequence_number, stream_ms=stream_created_ms(stream_arn), changed_at_ms=changed_at
    )


def kinesis_change_version(from_us: int, to_us: int, event_id: str | None) -> Version:
    """The version of a change delivered through Kinesis, from its time as an interval of us.

    ``changed_at`` (epoch ms, a date in the mapping) is kept for tombstone purges, reindex
    ages and freshness; the order uses the microsecond interval alone.
    """
    return Version(
        changed_at_ms=from_us // _MS_US,
        change_from_us=from_us,
        change_to_us=to_us,
        event_id=event_id,
    )


def read_version(read_from_s: float, read_to_s: float) -> Version:
    """The version of a state read from the table between two clock readings."""
    return Version(read_from_ms=int(read_from_s * 1000), read_to_ms=int(read_to_s * 1000) + 1)


def version_from_meta(meta: Mapping[str, Any]) -> Version:
    """The version a document's ``_syncer`` object records (documents of any syncer release)."""
    seq = meta.get("seq")
    get = meta.get
    # Most fields are absent or an int: those skip _int_or_none's checks (one kept state or
    # read document each, thousands per batch).
    return Version(
        seq=int(seq) if seq is not None else None,
        stream_ms=v if (v := get("stream")) is None or type(v) is int else _int_or_none(v),
        changed_at_ms=(
            v if (v := get("changed_at")) is None or type(v) is int else _int_or_none(v)
        ),
        read_from_ms=v if (v := get("read_from")) is None or type(v) is int else _int_or_none(v),
        read_to_ms=v if (v := get("read_to")) is None or type(v) is int else _int_or_none(v),
        change_from_us=(
            v if (v := get("change_from_us")) is None or type(v) is int else _int_or_none(v)
        ),
        change_to_us=(
            v if (v := get("change_to_us")) is None or type(v) is int else _int_or_none(v)
        ),
        event_id=event_id if isinstance(event_id := get("event_id"), str) else None,
    )


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def padded_sequence(sequence_number: int) -> str:
    """Sequence numbers as fixed-width text, so that text order equals numeric order."""
    return str(sequence_number).zfill(SEQUENCE_DIGITS)


def stream_created_ms(stream_arn: object) -> int | None:
    """The creation time of a stream, from the label its ARN ends in; None without one."""
    return _label_ms(stream_arn) if isinstance(stream_arn, str) else None


@functools.lru_cache(maxsize=64)  # a batch carries one ARN (a function serves a few)
def _label_ms(arn: str) -> int | None:
    match = _STREAM_LABEL.search(arn)
    if match is None:
        return None
    try:
        when = dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return int(when.timestamp() * 1000)


def _change_second(version: Version) -> int | None:
    """The start of the whole second in which a change happened (production has no more)."""
    at = version.changed_at_ms
    return None if at is None else at - at % _SECOND_MS


def compare(new: Version, old: Version | None) -> Order:
    """Whether a state with version ``new`` may replace one with version ``old``."""
    if old is None or not (old.is_change or old.is_read):
        return Order.NEWER  # nothing there, or a scan from before versions: anything wins
    if not (new.is_change or new.is_read):
        return Order.OLDER
    if new.is_change and old.is_change:
        if new.is_kinesis or old.is_kinesis:
            return _compare_timed_changes(new, old)
        return _compare_changes(new, old)
    if new.is_read and old.is_read:
        return _compare_reads(new, old)
    if new.is_change:
        return _change_against_read(new, old)
    flipped = _change_against_read(old, new)
    if flipped is Order.UNKNOWN:
        return flipped
    return Order.OLDER if flipped is Order.NEWER else Order.NEWER


def _compare_changes(new: Version, old: Version) -> Order:
    if new.stream_ms is not None and old.stream_ms is not None and new.stream_ms != old.stream_ms:
        return Order.NEWER if new.stream_ms > old.stream_ms else Order.OLDER
    if new.stream_ms is not None and old.stream_ms is None:
        # Written before versions named streams: a change older than the new stream itself
        # came from an older stream; otherwise it is taken to be of the same stream.
        second = _change_second(old)
        if second is not None and second + _SECOND_MS + CLOCK_UNCERTAINTY_MS <= new.stream_ms:
            return Order.NEWER
    return Order.NEWER if (new.seq or 0) > (old.seq or 0) else Order.OLDER


def _compare_reads(new: Version, old: Version) -> Order:
    """The later read wins only by twice the clock margin: each reader's clock may be off by
    up to the margin, in opposite directions (a reindex here, a Lambda's re-read there).
    """
    new_from, new_to = new.read_from_ms or 0, new.read_to_ms or 0
    old_from, old_to = old.read_from_ms or 0, old.read_to_ms or 0
    slack = 2 * CLOCK_UNCERTAINTY_MS
    if new_from >= old_to + slack:
        return Order.NEWER
    if new_to + slack <= old_from:
        return Order.OLDER
    return Order.UNKNOWN


def change_interval_us(version: Version) -> tuple[int, int] | None:
    """When a change happened, as epoch microseconds with both ends included; None: unknown.

    A Kinesis change carries its own interval (one microsecond, or the 1,000 of a millisecond);
    a DynamoDB Streams change its whole second.
    """
    if version.change_from_us is not None and version.change_to_us is not None:
        return version.change_from_us, version.change_to_us
    second = _change_second(version)
    if second is None:
        return None
    return second * _MS_US, second * _MS_US + _SECOND_US - 1


def _compare_timed_changes(new: Version, old: Version) -> Order:
    """Rule 5: two changes of which at least one came through Kinesis, ordered by their time.

    Two Kinesis changes carry DynamoDB's time of each change of the item: disjoint intervals
    order them; the same eventID at the same time is a duplicate (nothing to write); any other
    overlap (the same millisecond, or a millisecond holding a microsecond) is UNKNOWN. Against
    a DynamoDB Streams change (a table that moved from one source to the other) the Streams
    side has whole seconds only, and the two reached syncer through different services: the
    intervals must lie ``CLOCK_UNCERTAINTY_MS`` apart to be ordered.
    """
    new_span, old_span = change_interval_us(new), change_interval_us(old)
    if new_span is None or old_span is None:
        return Order.UNKNOWN
    (new_from, new_to), (old_from, old_to) = new_span, old_span
    if new.is_kinesis and old.is_kinesis:
        if new_span == old_span and new.event_id is not None and new.event_id == old.event_id:
            return Order.OLDER  # a duplicate: the same state
        margin = 0
    else:
        margin = CLOCK_UNCERTAINTY_MS * _MS_US
    if new_from > old_to + margin:
        return Order.NEWER
    if new_to + margin < old_from:
        return Order.OLDER
    return Order.UNKNOWN


def _change_against_read(change: Version, read: Version) -> Order:
    """NEWER when the change certainly happened after the read, OLDER when certainly before.

    The change's interval (its whole second from DynamoDB Streams, its millisecond or
    microsecond from Kinesis) against the read's, with ``CLOCK_UNCERTAINTY_MS`` of slack.
    """
    span = change_interval_us(change)
    if span is None:
        return Order.UNKNOWN
    margin = CLOCK_UNCERTAINTY_MS * _MS_US
    if span[1] + 1 + margin <= (read.read_from_ms or 0) * _MS_US:
        return Order.OLDER  # the read saw it
    if span[0] >= (read.read_to_ms or 0) * _MS_US + margin:
        return Order.NEWER  # it happened after the read
    return Order.UNKNOWN
