"""Coalesce a batch to one change per item key: the newest in the version order wins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from syncer.core.records import ChangeRecord, KinesisChangeRecord
from syncer.core.versions import Order, change_interval_us, compare


def _in_version_order(record: ChangeRecord) -> tuple[int, int]:
    """Stream creation time, then sequence number: a batch redriven from dead letters can mix
    a re-created stream's records with the old one's (syncer.core.versions, rule 2)."""
    return (record.version.stream_ms or 0, record.sequence_number)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """Every change of one item in a batch; ``latest`` is the one whose state is applied."""

    table: str
    document_id: str
    latest: ChangeRecord
    records: tuple[ChangeRecord, ...]  # all of this key's records, oldest first

    @property
    def uncertain(self) -> bool:
        """The batch holds another change of the key that ``latest`` cannot be ordered against
        (two Kinesis changes in one millisecond): the item is read again whatever is indexed.

        Only keys with a Kinesis change can be uncertain (a stream's sequence numbers always
        order), and a duplicate of ``latest`` (same eventID, same time) is not.
        """
        if len(self.records) == 1 or not any(
            isinstance(record, KinesisChangeRecord) for record in self.records
        ):
            return False
        version = self.latest.version
        return any(
            compare(version, record.version) is Order.UNKNOWN for record in self.records[:-1]
        )

    @property
    def sequence_texts(self) -> tuple[str, ...]:
        return tuple(record.sequence_text for record in self.records)


def coalesce_latest_per_key(records: Iterable[ChangeRecord]) -> list[KeyChange]:
    """Group records by (table, document id) and keep the newest of each group.

    Sequence numbers are compared as integers: they have 21 to 40 digits, so neither text order
    nor a 64-bit long is right. Keys come out in the order of their first record.
    """
    groups: dict[tuple[str, str], list[ChangeRecord]] = {}
    changes = []
    for record in records:
        key = (record.table, record.document_id)
        group = groups.get(key)
        if group is None:
            groups[key] = [record]
        else:
            group.append(record)
    for (table, document_id), group in groups.items():
        # Most keys have one record in a batch: nothing to sort.
        if len(group) == 1:
            changes.append(KeyChange(table, document_id, group[0], (group[0],)))
        elif any(isinstance(record, KinesisChangeRecord) for record in group):
            changes.append(_timed_change(table, document_id, group))
        else:
            ordered = tuple(sorted(group, key=_in_version_order))
            changes.append(KeyChange(table, document_id, ordered[-1], ordered))
    return changes


def _in_time_order(record: ChangeRecord) -> tuple[int, int]:
    span = change_interval_us(record.version)
    return span if span is not None else (-1, -1)


def _timed_change(table: str, document_id: str, group: list[ChangeRecord]) -> KeyChange:
    """A key's changes that came through Kinesis, whose sequence numbers order deliveries only.

    Ordered by the change's time (rule 5 of docs/ordering.md); the latest is the one whose
    interval starts last, and when ``compare`` cannot place it after every other change of
    the batch (not a duplicate of it) the key is ``uncertain`` and its item is read again.
    """
    ordered = tuple(sorted(group, key=_in_time_order))
    return KeyChange(table, document_id, ordered[-1], ordered)
