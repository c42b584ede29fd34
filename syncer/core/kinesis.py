"""Unwrap Lambda's Kinesis records of a table streamed to Kinesis Data Streams (pure).

Each record's ``kinesis.data`` is base64 of the JSON DynamoDB writes for one change
(REFERENCE.md, "Kinesis Data Streams for DynamoDB"). ``unwrap_kinesis_record`` checks the
envelope and the format and returns the change's JSON with what orders it; every failure is a
``PoisonRecordError`` saying why, so the record goes to the dead letters alone.
``syncer.core.records`` turns the change into a ``ChangeRecord``.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncer.core import jsoncodec
from syncer.errors import PoisonRecordError

KINESIS_SOURCE = "aws:kinesis"
# ApproximateCreationDateTime is epoch milliseconds or microseconds, per the table's
# ApproximateCreationDateTimePrecision, which may change at any time: the unit is told per
# record by magnitude. Real dates (2001-09-09 to 2286-11-20) are 13-digit values in
# milliseconds and 16-digit values in microseconds, so the threshold 10^14 lies a factor of ten
# away from both; a value outside both ranges (seconds, a date before 2001 or after 2286, a
# millisecond value a thousand times too large) is not a time syncer can order and is poison.
UNIT_THRESHOLD = 10**14
MILLISECOND_RANGE = (10**12, 10**13)
MICROSECOND_RANGE = (10**15, 10**16)
_EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
_MAX_SEQUENCE_DIGITS = 128  # Kinesis numbers have 56 digits today; room, but not unbounded


@dataclass(frozen=True, slots=True)
class KinesisOrigin:
    """Where a change came from on Kinesis, and when it happened on DynamoDB's clock."""

    sequence_text: str  # kinesis.sequenceNumber: Lambda's itemIdentifier for this record
    change_from_us: int  # ApproximateCreationDateTime as epoch microseconds, both ends included
    change_to_us: int
    event_id: str  # DynamoDB's eventID of the change: a duplicate carries the same one


def is_kinesis_record(record: object) -> bool:
    return isinstance(record, Mapping) and record.get("eventSource") == KINESIS_SOURCE


def sequence_text_of(record: object) -> str | None:
    """The record's ``kinesis.sequenceNumber`` when it is a usable itemIdentifier, else None."""
    envelope = record.get("kinesis") if isinstance(record, Mapping) else None
    number = envelope.get("sequenceNumber") if isinstance(envelope, Mapping) else None
    if (
        isinstance(number, str)
        and number.isascii()
        and number.isdigit()
        and len(number) <= _MAX_SEQUENCE_DIGITS
    ):
        return number
    return None


def creation_interval_us(raw: object) -> tuple[int, int]:
    """``ApproximateCreationDateTime`` (epoch ms or us) as an interval of epoch microseconds.

    A millisecond value ``t`` stands for every microsecond of that millisecond:
    ``[t * 1000, t * 1000 + 999]``; a microsecond value for itself.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PoisonRecordError(f"ApproximateCreationDateTime is not a number: {raw!r:.40}")
    if isinstance(raw, float) and not raw.is_integer():  # also NaN and infinities
        raise PoisonRecordError(
            f"ApproximateCreationDateTime is not a whole number of ms or us: {raw!r:.40}"
        )
    value = int(raw)
    if value < UNIT_THRESHOLD:
        low, high = MILLISECOND_RANGE
        if low <= value < high:
            return value * 1000, value * 1000 + 999
    else:
        low, high = MICROSECOND_RANGE
        if low <= value < high:
            return value, value
    raise PoisonRecordError(
        "ApproximateCreationDateTime is neither epoch milliseconds nor microseconds of a date "
        f"from 2001 to 2286: {raw!r:.40}"
    )


def unwrap_kinesis_record(record: Mapping[str, Any]) -> tuple[dict[str, Any], KinesisOrigin]:
    """The change DynamoDB wrote into a Lambda Kinesis record, and its origin; or poison."""
    envelope = record.get("kinesis")
    if not isinstance(envelope, Mapping):
        raise PoisonRecordError("Kinesis record has no 'kinesis' object")
    sequence = sequence_text_of(record)
    if sequence is None:
        raise PoisonRecordError(
            f"kinesis.sequenceNumber is not a decimal string: "
            f"{envelope.get('sequenceNumber')!r:.80}"
        )
    data = envelope.get("data")
    if not isinstance(data, str):
        raise PoisonRecordError("kinesis.data is not a string")
    try:
        # Strict: only the base64 alphabet, padding where it belongs (no regex pass over data).
        raw = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise PoisonRecordError(f"kinesis.data is not base64: {data!r:.60}") from None
    try:
        # orjson: DynamoDB's JSON carries its numbers as text ({"N": "..."}), so no digit of an
        # attribute depends on the parser; it refuses invalid UTF-8 and lone surrogates.
        change = jsoncodec.loads(raw)
    except ValueError:
        raise PoisonRecordError(f"kinesis.data is not JSON: {raw!r:.60}") from None
    _check_format(change)
    times = creation_interval_us(change["dynamodb"].get("ApproximateCreationDateTime"))
    return change, KinesisOrigin(sequence, times[0], times[1], change["eventID"])


def _check_format(change: object) -> None:
    """Refuse anything but the JSON DynamoDB writes to Kinesis, naming what differs."""
    if not isinstance(change, dict):
        raise PoisonRecordError(f"kinesis.data is not a JSON object: {change!r:.60}")
    if change.get("eventSource") != "aws:dynamodb" or change.get("recordFormat") != (
        "application/json"
    ):
        raise PoisonRecordError(
            "kinesis.data is not a change of Kinesis Data Streams for DynamoDB (eventSource "
            f"{change.get('eventSource')!r:.40}, recordFormat {change.get('recordFormat')!r:.40})"
        )
    table = change.get("tableName")
    if not isinstance(table, str) or not table:
        raise PoisonRecordError("kinesis.data has no tableName")
    event_id = change.get("eventID")
    if not isinstance(event_id, str) or not event_id:
        raise PoisonRecordError("kinesis.data has no eventID")
    name = change.get("eventName")
    if name not in _EVENT_NAMES:
        raise PoisonRecordError(f"unknown eventName {name!r:.40}")
    body = change.get("dynamodb")
    if not isinstance(body, dict):
        raise PoisonRecordError("kinesis.data has no 'dynamodb' object")
    if name != "REMOVE" and "NewImage" not in body:
        # DynamoDB writes both images to Kinesis: a change without its new image is not one.
        raise PoisonRecordError(f"{name} change without NewImage: not DynamoDB's Kinesis format")


def table_of(record: object) -> str | None:
    """The configured-table candidate a Kinesis record names, when its data can be read."""
    envelope = record.get("kinesis") if isinstance(record, Mapping) else None
    data = envelope.get("data") if isinstance(envelope, Mapping) else None
    if not isinstance(data, str):
        return None
    try:
        change = jsoncodec.loads(binascii.a2b_base64(data, strict_mode=True))
    except ValueError:  # binascii.Error is one
        return None
    table = change.get("tableName") if isinstance(change, dict) else None
    return table if isinstance(table, str) else None
