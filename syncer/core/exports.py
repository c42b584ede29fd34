"""A DynamoDB export to S3, parsed without I/O: its manifests, its data lines and their versions.

The layout (REFERENCE.md, "DynamoDB export to S3"): ``manifest-summary.json`` (one JSON
object), ``manifest-files.json`` (JSON lines, one per gzip data file with its item count and
the base64 MD5 of the object) and the data files, one DynamoDB JSON line per item.

Versions (docs/ordering.md, "Exports"):

- a full export is a read of the table over ``[exportTime - 60 s, exportTime + 60 s]``: AWS
  documents that the time of the request and the last update included may differ by up to a
  minute either way, and that the export is not transactionally consistent;
- an incremental export's line holds the item as its last write in the window left it, at
  ``WriteTimestampMicros`` on DynamoDB's clock: the state the table held at that instant. It
  is a read over ``[t, t + 1 ms]``; the rules that compare reads already allow for the
  disagreement of DynamoDB's clock and syncer's (``CLOCK_UNCERTAINTY_MS``, rules 3 and 4), so
  it orders against stream changes and other reads with no new rule. A stream change within
  the same second (or about two) cannot be ordered against it: the writer reads the item again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.config import TableConfig
from syncer.core import jsoncodec
from syncer.core.documents import IndexedDocument
from syncer.core.fingerprint import content_fingerprint
from syncer.core.plan import document_body
from syncer.core.versions import Version, read_version
from syncer.errors import SyncerError

# AWS: "the time of the request and the time of the last update included may vary within a
# one-minute window" (DynamoDB developer guide, "How export works").
EXPORT_TIME_SLACK_S = 60.0
FULL_EXPORT = "FULL_EXPORT"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
SUMMARY_NAME = "manifest-summary.json"


class ExportFormatError(SyncerError):
    """An export's manifest or data line is not in the documented layout, or disagrees."""


class ExportRefusedError(SyncerError):
    """An export that must not be applied to this table: another table's, or too old."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What ``manifest-summary.json`` says about an export."""

    export_arn: str
    export_type: str  # FULL_EXPORT or INCREMENTAL_EXPORT
    export_time_ms: int  # full: the point in time; incremental: exportToTime
    item_count: int
    manifest_files_key: str  # relative to the bucket root
    bucket: str
    from_time_ms: int | None = None  # incremental: the window's inclusive start
    to_time_ms: int | None = None  # incremental: the window's exclusive end
    table_arn: str = ""  # the exported table (``tableArn``)

    @property
    def is_incremental(self) -> bool:
        return self.export_type == INCREMENTAL_EXPORT

    @property
    def read_version(self) -> Version:
        """A full export's version: a read over exportTime plus or minus a minute."""
        at_s = self.export_time_ms / 1000
        return read_version(at_s - EXPORT_TIME_SLACK_S, at_s + EXPORT_TIME_SLACK_S)

    @property
    def lower_bound_ms(self) -> int:
        """The earliest instant whose writes the export may lack (full: exportTime - 60 s)."""
        return self.read_version.read_from_ms or 0


@dataclass(frozen=True, slots=True)
class DataFile:
    """One line of ``manifest-files.json``: a gzip data file and what it must hold."""

    key: str  # dataFileS3Key, relative to the bucket root
    item_count: int
    md5: str  # base64 of the object's MD5

    def to_json(self) -> dict[str, Any]:
        return {"dataFileS3Key": self.key, "itemCount": self.item_count, "md5Checksum": self.md5}


@dataclass(frozen=True, slots=True)
class ExportLine:
    """One item of a data file: its key attributes, its state (None: deleted) and version."""

    keys: Mapping[str, Any]  # typed (DynamoDB JSON)
    new_image: Mapping[str, Any] | None  # typed; None when the item was deleted
    old_image: Mapping[str, Any] | None  # typed; incremental NEW_AND_OLD_IMAGES only
    version: Version


def _iso_ms(value: object, field: str) -> int:
    if not isinstance(value, str):
        raise ExportFormatError(f"manifest-summary.json: {field} is {value!r}, not an ISO time")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ExportFormatError(
            f"manifest-summary.json: {field} {value!r} is not ISO 8601"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return round(when.timestamp() * 1000)


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExportFormatError(f"{where}: itemCount is {value!r}, not a count")
    return value


def parse_summary(raw: bytes) -> ExportSummary:
    """``manifest-summary.json`` -> ``ExportSummary``; ION exports and missing fields refused."""
    try:
        summary = jsoncodec.loads(raw)
    except ValueError as error:
        raise ExportFormatError(f"manifest-summary.json is not JSON: {error}") from None
    if not isinstance(summary, dict):
        raise ExportFormatError("manifest-summary.json is not a JSON object")
    output = summary.get("outputFormat", "DYNAMODB_JSON")
    if output != "DYNAMODB_JSON":
        raise ExportFormatError(f"export format {output!r}: syncer reads DYNAMODB_JSON exports")
    export_type = summary.get("exportType") or FULL_EXPORT
    if export_type not in (FULL_EXPORT, INCREMENTAL_EXPORT):
        raise ExportFormatError(f"manifest-summary.json: exportType {export_type!r} is unknown")
    manifest_key, bucket = summary.get("manifestFilesS3Key"), summary.get("s3Bucket")
    if not isinstance(manifest_key, str) or not isinstance(bucket, str):
        raise ExportFormatError("manifest-summary.json lacks manifestFilesS3Key or s3Bucket")
    from_ms = to_ms = None
    if export_type == INCREMENTAL_EXPORT:
        from_ms = _iso_ms(summary.get("exportFromTime"), "exportFromTime")
        to_ms = _iso_ms(summary.get("exportToTime"), "exportToTime")
        export_time = to_ms
    else:
        export_time = _iso_ms(summary.get("exportTime"), "exportTime")
    return ExportSummary(
        export_arn=str(summary.get("exportArn", "")),
        export_type=export_type,
        export_time_ms=export_time,
        item_count=_count(summary.get("itemCount"), "manifest-summary.json"),
        manifest_files_key=manifest_key,
        bucket=bucket,
        from_time_ms=from_ms,
        to_time_ms=to_ms,
        table_arn=str(summary.get("tableArn") or ""),
    )


def table_name_of(table_arn: str) -> str:
    """``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`` -> NAME ("" when it is no table ARN)."""
    _, found, rest = table_arn.partition(":table/")
    return rest.split("/", 1)[0] if found else ""


def check_export_of_table(summary: ExportSummary, table_name: str, table_arn: str) -> None:
    """Refuse another table's export, naming both tables (``tableArn`` against the table's).

    Items of another table would become documents no item of this one stands for, and its
    absent items would be tombstoned by a reindex. ``table_arn`` is the configured table's own
    ARN (DescribeTable's ``TableArn``); without one, the names are compared.
    """
    exported = summary.table_arn
    if not exported:
        raise ExportRefusedError(
            f"{SUMMARY_NAME} names no tableArn: syncer cannot tell whether the export is of "
            f"table {table_name!r}, so it applies nothing"
        )
    same = exported == table_arn if table_arn else table_name_of(exported) == table_name
    if not same:
        raise ExportRefusedError(
            f"the export is of table {table_name_of(exported) or exported!r} ({exported}), not "
            f"of the configured table {table_name!r} ({table_arn or 'ARN unknown'}): nothing "
            "was applied"
        )


def check_export_age(summary: ExportSummary, now_ms: int, tombstone_retention_s: float) -> None:
    """Refuse an export older than the tombstone retention (docs/ordering.md, "Exports").

    An item deleted after the export was taken lives on in the export; only the delete's
    tombstone stops the exported state from bringing it back. Tombstones older than the
    retention are not carried into a new index (and ``purge-tombstones`` deletes them), so
    the export's earliest state must be younger than that.
    """
    oldest_allowed_ms = now_ms - int(tombstone_retention_s * 1000)
    if summary.lower_bound_ms >= oldest_allowed_ms:
        return
    age_days = (now_ms - summary.lower_bound_ms) / 86_400_000
    retention_days = tombstone_retention_s / 86_400
    raise ExportRefusedError(
        f"the export is {age_days:.1f} days old, older than the {retention_days:g}-day tombstone "
        "retention: deletes made after the export but older than that have no tombstone left "
        "to stop the export's state of their items, so those items would come back. Take a "
        "new export (or rebuild with a scan: syncer reindex without --export)"
    )


def parse_manifest_files(raw: bytes, summary: ExportSummary) -> list[DataFile]:
    """``manifest-files.json`` -> its data files; their counts must add up to the summary's."""
    files = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"manifest-files.json line {number}"
        try:
            entry = jsoncodec.loads(line)
        except ValueError as error:
            raise ExportFormatError(f"{where} is not JSON: {error}") from None
        if not isinstance(entry, dict):
            raise ExportFormatError(f"{where} is not a JSON object")
        key, md5 = entry.get("dataFileS3Key"), entry.get("md5Checksum")
        if not isinstance(key, str) or not isinstance(md5, str):
            raise ExportFormatError(f"{where} lacks dataFileS3Key or md5Checksum")
        files.append(DataFile(key, _count(entry.get("itemCount"), where), md5))
    total = sum(data_file.item_count for data_file in files)
    if total != summary.item_count:
        raise ExportFormatError(
            f"manifest-files.json lists {total} items in {len(files)} files, but "
            f"manifest-summary.json says {summary.item_count}: the export is incomplete"
        )
    return files


def md5_matches(digest: bytes, expected_b64: str) -> bool:
    """Whether an MD5 digest equals a manifest's base64 ``md5Checksum``."""
    try:
        return base64.b64decode(expected_b64, validate=True) == digest
    except (binascii.Error, ValueError):
        return False


def incremental_version(write_micros: int) -> Version:
    """The version of an incremental export line: a read at the instant of its write."""
    at_ms = write_micros // 1000
    return Version(read_from_ms=at_ms, read_to_ms=at_ms + 1)


def parse_line(
    raw: bytes | str, summary: ExportSummary, key_names: Sequence[str], where: str
) -> ExportLine:
    """One data line -> ``ExportLine`` (full: ``Item``; incremental: ``Keys``/``NewImage``)."""
    try:
        line = jsoncodec.loads(raw)
    except ValueError as error:
        raise ExportFormatError(f"{where} is not JSON: {error}") from None
    if not isinstance(line, dict):
        raise ExportFormatError(f"{where} is not a JSON object")
    if not summary.is_incremental:
        item = line.get("Item")
        if not isinstance(item, dict):
            raise ExportFormatError(f"{where} has no Item")
        keys = _key_of(item, key_names, where)
        return ExportLine(keys, item, None, summary.read_version)
    keys_raw, new_image, old_image = line.get("Keys"), line.get("NewImage"), line.get("OldImage")
    written = (line.get("Metadata") or {}).get("WriteTimestampMicros") or {}
    micros = written.get("N") if isinstance(written, dict) else None
    if not isinstance(keys_raw, dict) or not isinstance(micros, str) or not micros.isdigit():
        raise ExportFormatError(f"{where} lacks Keys or Metadata.WriteTimestampMicros")
    keys = _key_of(keys_raw, key_names, where)
    return ExportLine(
        keys,
        new_image if isinstance(new_image, dict) else None,
        old_image if isinstance(old_image, dict) else None,
        incremental_version(int(micros)),
    )


def _key_of(typed: Mapping[str, Any], key_names: Sequence[str], where: str) -> dict[str, Any]:
    missing = [name for name in key_names if name not in typed]
    if missing:
        raise ExportFormatError(f"{where} lacks the key attribute(s) {missing}")
    return {name: typed[name] for name in key_names}


def holds_this_state(
    indexed: IndexedDocument | None,
    version: Version,
    document: Mapping[str, Any] | None,
    table: TableConfig,
) -> bool:
    """Whether ``indexed`` is already exactly this exported state (``document``, or a tombstone
    when None, with the read ``version``): the same read interval and the same content.

    A retried work item meets its own writes: two reads with one interval compare as UNKNOWN
    (rule 4), which would read every item again from the table. Skipping a state the index
    already holds writes nothing that writing it would not, so the order of versions is
    untouched (docs/ordering.md, "Exports"). ``indexed.fields`` must hold the whole
    ``_source`` (``WriteOptions(fields=("*",))``); with less, the contents differ and the
    item is read again as before.
    """
    if indexed is None or not version.is_read or not indexed.version.is_read:
        return False
    same_read = (indexed.version.read_from_ms, indexed.version.read_to_ms) == (
        version.read_from_ms,
        version.read_to_ms,
    )
    if not same_read:
        return False
    if document is None or indexed.deleted:
        return document is None and indexed.deleted
    body = document_body(document, table, version)
    return content_fingerprint(indexed.fields) == content_fingerprint(body)
