"""Decode stream records (Lambda event format) into frozen ``ChangeRecord`` values.

DynamoDB Streams records directly; records of a table streamed to Kinesis Data Streams through
``syncer.core.kinesis``, which unwraps the change DynamoDB wrote into each.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from syncer.core import kinesis
from syncer.core.attributes import decode_attributes, decode_item
from syncer.core.kinesis import KinesisOrigin
from syncer.core.versions import SEQUENCE_DIGITS as SEQUENCE_DIGITS
from syncer.core.versions import Version, change_version, kinesis_change_version
from syncer.core.versions import padded_sequence as padded_sequence
from syncer.errors import InvalidEventError, PoisonRecordError

# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_StreamRecord.html
_SEQUENCE_NUMBER = re.compile(r"[0-9]{1,40}")
_TABLE_FROM_ARN = re.compile(r"arn:[^:]+:dynamodb:[^:]*:[^:]*:table/([^/]+)(?:/|$)")
_VIEW_TYPES = {"KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"}
# A plain decimal number: no sign words (nan, inf), spaces or underscores that float() would take.
_DECIMAL_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
LATEST_CREATION_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a date can hold
MAX_DOCUMENT_ID_BYTES = 512  # OpenSearch >= 2.9 rejects longer _id values

# Per table, the OldImage attributes syncer reads (``syncer.core.plan.old_image_fields``): only
# they are decoded and checked. A table not in the map has its whole OldImage decoded.
OldImageFields = Mapping[str, Sequence[str]]


class EventName(Enum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


_EVENT_NAMES = {member.value: member for member in EventName}


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One decoded change of one item, with everything later stages need."""

    table: str
    event_name: EventName
    sequence_number: int
    keys: Mapping[str, Any]
    document_id: str
    new_image: Mapping[str, Any] | None
    old_image: Mapping[str, Any] | None
    view_type: str
    is_ttl_delete: bool
    approximate_creation_s: float | None
    raw: Mapping[str, Any]
    # A REMOVE needs only its Keys: an image that cannot be decoded is dropped, and why is kept.
    image_error: str | None = None
    # ``version`` as the decoder computed it once (coalescing, planning and the written keys
    # each ask for it); None: computed on every access.
    decoded_version: Version | None = field(default=None, compare=False, repr=False)

    @property
    def sequence_text(self) -> str:
        """The sequence number as the stream spelled it (also Lambda's itemIdentifier)."""
        return str(self.raw["dynamodb"]["SequenceNumber"])

    @property
    def typed_keys(self) -> Mapping[str, Any]:
        """The item key in DynamoDB's typed form, as the stream carried it (for reads by key)."""
        keys: Mapping[str, Any] = self.raw["dynamodb"]["Keys"]
        return keys

    @property
    def version(self) -> Version:
        """This change's place in the one version order (``syncer.core.versions``)."""
        if self.decoded_version is not None:
            return self.decoded_version
        return change_version(
            self.sequence_number, self.raw.get("eventSourceARN"), self.approximate_creation_s
        )

    @property
    def is_remove(self) -> bool:
        return self.event_name is EventName.REMOVE

    @property
    def is_insert(self) -> bool:
        return self.event_name is EventName.INSERT

    @property
    def needs_item_lookup(self) -> bool:
        """True when the stream does not carry the new image and the table must be read."""
        return not self.is_remove and self.new_image is None


@dataclass(frozen=True, slots=True)
class KinesisChangeRecord(ChangeRecord):
    """A change delivered through Kinesis Data Streams (``syncer.core.kinesis``).

    ``sequence_number`` is the Kinesis record's, which orders deliveries, not changes: its
    version is the change's time instead (rule 5 of docs/ordering.md). ``raw`` is the Lambda
    Kinesis record as delivered (what a dead letter keeps); ``key_attributes`` the typed Keys
    from its decoded data.
    """

    origin: KinesisOrigin | None = None
    key_attributes: Mapping[str, Any] | None = None

    @property
    def _origin(self) -> KinesisOrigin:
        if self.origin is None:
            raise ValueError("a Kinesis change was built without its origin")
        return self.origin

    @property
    def sequence_text(self) -> str:
        """``kinesis.sequenceNumber``: Lambda's itemIdentifier for a Kinesis record."""
        return self._origin.sequence_text

    @property
    def typed_keys(self) -> Mapping[str, Any]:
        return self.key_attributes if self.key_attributes is not None else {}

    @property
    def version(self) -> Version:
        if self.decoded_version is not None:
            return self.decoded_version
        origin = self._origin
        return kinesis_change_version(origin.change_from_us, origin.change_to_us, origin.event_id)


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that cannot be decoded, with the reason; it goes to the dead letters."""

    raw: object
    error: PoisonRecordError
    table: str | None
    sequence_text: str | None


def _escape_key_part(value: Any) -> str:
    if type(value) is str:
        if "\\" not in value and "|" not in value and "#" not in value:
            return value
        text = value
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        text = str(value)
    else:
        raise PoisonRecordError(f"key value of type {type(value).__name__} cannot form an id")
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("#", "\\#")


def document_id(keys: Mapping[str, Any]) -> str:
    """A collision-free OpenSearch ``_id`` from the full item key, within 512 bytes.

    Parts are escaped and joined in key-name order, so ``("a|b", "c")`` and ``("a", "b|c")``
    differ. Ids too long for OpenSearch become ``#`` + SHA-256; ``#`` is escaped in plain ids so
    the two forms never meet.
    """
    if not keys:
        raise PoisonRecordError("record has no key attributes")
    names = sorted(keys)
    parts = [_escape_key_part(keys[name]) for name in names]
    if "" in parts:  # only an empty value escapes to "": DynamoDB keys are never empty
        raise PoisonRecordError(
            f"key attribute {names[parts.index('')]!r} is empty; DynamoDB never stores an empty "
            "key value and it cannot form a document id"
        )
    plain = "|".join(parts)
    if plain.isascii():  # one byte per character, and no lone surrogate to refuse
        if len(plain) <= MAX_DOCUMENT_ID_BYTES:
            return plain
        return "#" + hashlib.sha256(plain.encode("ascii")).hexdigest()
    try:
        encoded = plain.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: valid as a JSON escape, never in DynamoDB
        raise PoisonRecordError(f"key is not valid UTF-8 text: {plain!r:.80}") from None
    if len(encoded) <= MAX_DOCUMENT_ID_BYTES:
        return plain
    return "#" + hashlib.sha256(encoded).hexdigest()


def table_from_arn(arn: object) -> str | None:
    """The table name in a stream or table ARN, or None."""
    return _table_in_arn(str(arn)) if isinstance(arn, str) else None


@functools.lru_cache(maxsize=64)  # a batch carries one ARN (a function serves a few)
def _table_in_arn(arn: str) -> str | None:
    match = _TABLE_FROM_ARN.match(arn)
    return match.group(1) if match else None


def _parse_sequence(raw: object) -> int:
    # isascii() and isdigit() together mean [0-9]+, without a regular expression.
    if type(raw) is str and raw.isascii() and raw.isdigit() and len(raw) <= SEQUENCE_DIGITS:
        return int(raw)
    if not isinstance(raw, str) or not _SEQUENCE_NUMBER.fullmatch(raw):
        raise PoisonRecordError(
            f"SequenceNumber is not a decimal string of 1-40 digits: {raw!r:.60}"
        )
    return int(raw)


def _parse_creation_time(raw: object) -> float | None:
    """Epoch seconds, or a poison record: a time that cannot be read would fail the whole batch
    later (it becomes the version's ``changed_at``, an epoch_millis date)."""
    if raw is None:
        return None
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float | Decimal | str)
        or (isinstance(raw, str) and not _DECIMAL_NUMBER.fullmatch(raw))
    ):
        raise PoisonRecordError(f"ApproximateCreationDateTime is not a number: {raw!r:.40}")
    try:
        seconds = float(raw)  # a number, or a string like "1678831218.0"
    except OverflowError:  # an int beyond any float, either sign: out of range below
        seconds = math.inf
    if seconds > 1e11:
        seconds /= 1000  # via Kinesis it is in milliseconds
    if not 0 <= seconds <= LATEST_CREATION_S:  # also false for NaN
        raise PoisonRecordError(
            f"ApproximateCreationDateTime is out of range (epoch seconds from 0 to the end of "
            f"year 9999, or milliseconds): {raw!r:.40}"
        )
    return seconds


def _is_ttl_delete(record: Mapping[str, Any]) -> bool:
    identity = record.get("userIdentity")
    return (
        isinstance(identity, Mapping)
        and identity.get("type") == "Service"
        and identity.get("principalId") == "dynamodb.amazonaws.com"
    )


def decode_record(record: object, old_image_fields: OldImageFields | None = None) -> ChangeRecord:
    """Decode one stream record or raise ``PoisonRecordError`` with the reason.

    With ``old_image_fields``, a configured table's OldImage is decoded only in the attributes
    syncer reads from it (docs/operations.md, "Poison records"); without, whole.
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        raise PoisonRecordError(f"record is not an object: {record!r:.60}")
    if record.get("eventSource") == kinesis.KINESIS_SOURCE:
        return _decode_kinesis_record(record, old_image_fields)
    table = table_from_arn(record.get("eventSourceARN"))
    if table is None:
        raise PoisonRecordError(
            f"eventSourceARN does not name a DynamoDB table: {record.get('eventSourceARN')!r:.120}"
        )
    event_name = _event_name(record)
    body = record.get("dynamodb")
    if type(body) is not dict and not isinstance(body, Mapping):
        raise PoisonRecordError("record has no 'dynamodb' object")
    sequence_number = _parse_sequence(body.get("SequenceNumber"))
    old_fields = None if old_image_fields is None else old_image_fields.get(table)
    return _decode_change(record, record, table, event_name, sequence_number, None, old_fields)


def _event_name(change: Mapping[str, Any]) -> EventName:
    raw_name = change.get("eventName")
    event_name = _EVENT_NAMES.get(raw_name) if type(raw_name) is str else None
    if event_name is None:
        try:
            event_name = EventName(raw_name)
        except ValueError:
            raise PoisonRecordError(f"unknown eventName {raw_name!r:.40}") from None
    return event_name


def _decode_kinesis_record(
    record: Mapping[str, Any], old_image_fields: OldImageFields | None
) -> ChangeRecord:
    """A Lambda Kinesis record: the change DynamoDB wrote into its data, ordered by its time.

    The table is the change's ``tableName`` (matched against the configured tables later);
    its ``awsRegion`` is never used: syncer reads the table through its own AWS settings.
    Kinesis carries both images, as a NEW_AND_OLD_IMAGES stream does.
    """
    change, origin = kinesis.unwrap_kinesis_record(record)
    body = change["dynamodb"]
    keys = body.get("Keys")
    table = change["tableName"]
    return _decode_change(
        record,
        change,
        table,
        _event_name(change),
        int(origin.sequence_text),
        origin,
        None if old_image_fields is None else old_image_fields.get(table),
        typed_keys=keys if isinstance(keys, Mapping) else None,
    )


def _decode_change(
    record: Mapping[str, Any],
    change: Mapping[str, Any],
    table: str,
    event_name: EventName,
    sequence_number: int,
    origin: KinesisOrigin | None,
    old_fields: Sequence[str] | None,
    typed_keys: Mapping[str, Any] | None = None,
) -> ChangeRecord:
    """The ``ChangeRecord`` of one change; ``change`` is the record, or a Kinesis record's data.

    ``old_fields``: the only OldImage attributes decoded (None: all of them). The old image
    contributes only the old state's cache keys and route, rendered from these attributes and
    the Keys (which win over any image), so an attribute outside them harms nothing.
    """
    body = change["dynamodb"]
    keys = decode_item(body.get("Keys"), "Keys") if "Keys" in body else {}
    image_error = None
    if event_name is EventName.REMOVE:
        # A tombstone needs only the Keys: an image syncer cannot read must not keep a deleted
        # item searchable. The old image only adds cache keys; the indexed document has them.
        new_image = None
        old_image, image_error = _decode_image_leniently(body, "OldImage", old_fields, keys)
        if "NewImage" in body and image_error is None:
            _, image_error = _decode_image_leniently(body, "NewImage")
    else:
        new_image = decode_item(body["NewImage"], "NewImage") if "NewImage" in body else None
        old_image = (
            _decode_image(body["OldImage"], "OldImage", old_fields, keys)
            if "OldImage" in body
            else None
        )
    if origin is not None:
        view_type = "NEW_AND_OLD_IMAGES"
    else:
        view_type = body.get("StreamViewType") or _guess_view_type(
            "NewImage" in body, "OldImage" in body
        )
    if not isinstance(view_type, str) or view_type not in _VIEW_TYPES:
        raise PoisonRecordError(f"unknown StreamViewType {view_type!r:.40}")
    creation_s = (
        _parse_creation_time(body.get("ApproximateCreationDateTime"))
        if origin is None
        else origin.change_from_us / 1_000_000
    )
    make: Callable[..., ChangeRecord] = ChangeRecord
    if origin is not None:
        make = functools.partial(KinesisChangeRecord, origin=origin, key_attributes=typed_keys)
        version = kinesis_change_version(
            origin.change_from_us, origin.change_to_us, origin.event_id
        )
    else:
        version = change_version(sequence_number, record.get("eventSourceARN"), creation_s)
    return make(
        table=table,
        event_name=event_name,
        sequence_number=sequence_number,
        keys=keys,
        document_id=document_id(keys),
        new_image=new_image,
        old_image=old_image,
        view_type=view_type,
        is_ttl_delete=event_name is EventName.REMOVE and _is_ttl_delete(change),
        approximate_creation_s=creation_s,
        raw=record,
        image_error=image_error,
        decoded_version=version,
    )


def _decode_image(
    typed: object, name: str, fields: Sequence[str] | None, keys: Collection[str]
) -> dict[str, Any]:
    """The image whole, or only its ``fields`` that are not key attributes."""
    if fields is None:
        return decode_item(typed, name)
    return decode_attributes(typed, fields, keys, name)


def _decode_image_leniently(
    body: Mapping[str, Any],
    name: str,
    fields: Sequence[str] | None = None,
    keys: Collection[str] = (),
) -> tuple[dict[str, Any] | None, str | None]:
    """(the decoded image, None), or (None, why it was dropped); (None, None) when absent."""
    if name not in body:
        return None, None
    try:
        return _decode_image(body[name], name, fields, keys), None
    except PoisonRecordError as error:
        return None, f"{name} dropped: {error}"


def _guess_view_type(has_new_image: bool, has_old_image: bool) -> str:
    if has_new_image and has_old_image:
        return "NEW_AND_OLD_IMAGES"
    if has_new_image:
        return "NEW_IMAGE"
    if has_old_image:
        return "OLD_IMAGE"
    return "KEYS_ONLY"


def check_event(event: object) -> list[Any]:
    """Return the event's records after checking that it is one source's batch.

    A DynamoDB Streams batch, or a Kinesis batch of a table streamed to Kinesis Data Streams.
    A wrong event fails whole before anything is applied: a Lambda wired to the wrong source
    must not half-process it, and a batch mixing the two sources is no batch Lambda delivers.
    """
    if not isinstance(event, Mapping) or "Records" not in event:
        raise InvalidEventError(
            "event has no 'Records': syncer expects a DynamoDB Streams or Kinesis batch from an "
            "event source mapping"
        )
    records = event["Records"]
    if not isinstance(records, list):
        raise InvalidEventError("event 'Records' is not a list")
    first: tuple[int, str] | None = None
    for position, record in enumerate(records):
        if type(record) is dict or isinstance(record, Mapping):
            source = record.get("eventSource") or record.get("EventSource")
        else:
            source = None
        if source is not None and (type(source) is not str or source not in _SOURCES):
            raise InvalidEventError(
                f"record {position} comes from {source!r}, not aws:dynamodb or aws:kinesis: "
                "syncer only handles DynamoDB Streams and Kinesis batches; nothing was applied"
            )
        kind = _SOURCES["aws:dynamodb"] if source is None else _SOURCES[source]
        if first is None:
            first = (position, kind)
        elif kind != first[1]:
            raise InvalidEventError(
                f"record {position} is a {kind} record but record {first[0]} is a {first[1]} "
                "record: a batch must come from one source (one event source mapping); "
                "nothing was applied"
            )
    return records


_SOURCES = {"aws:dynamodb": "DynamoDB Streams", kinesis.KINESIS_SOURCE: "Kinesis"}


def decode_records(
    records: Iterable[object], old_image_fields: OldImageFields | None = None
) -> tuple[list[ChangeRecord], list[RejectedRecord]]:
    """Decode every record; bad ones become ``RejectedRecord`` values instead of stopping.

    ``old_image_fields`` as for ``decode_record``: ``process_batch`` passes the configured
    tables', so only what syncer reads of an OldImage is decoded and checked.
    """
    decoded: list[ChangeRecord] = []
    rejected: list[RejectedRecord] = []
    for record in records:
        try:
            decoded.append(decode_record(record, old_image_fields))
        except PoisonRecordError as error:
            rejected.append(_rejection(record, error))
        except RecursionError:  # nesting deeper than Python's stack: the record's own fault
            reason = "record could not be decoded (nested too deeply)"
            rejected.append(_rejection(record, PoisonRecordError(reason)))
        # Any other exception is a bug in the decoder: it fails the invocation instead of
        # dead-lettering (and acknowledging) a record syncer should have understood.
    return decoded, rejected


def _rejection(record: object, error: PoisonRecordError) -> RejectedRecord:
    table = sequence = None
    if kinesis.is_kinesis_record(record):
        return RejectedRecord(
            record, error, kinesis.table_of(record), kinesis.sequence_text_of(record)
        )
    if isinstance(record, Mapping):
        table = table_from_arn(record.get("eventSourceARN"))
        body = record.get("dynamodb")
        if isinstance(body, Mapping) and isinstance(body.get("SequenceNumber"), str):
            sequence = (
                body["SequenceNumber"]
                if _SEQUENCE_NUMBER.fullmatch(body["SequenceNumber"])
                else None
            )
    return RejectedRecord(raw=record, error=error, table=table, sequence_text=sequence)
