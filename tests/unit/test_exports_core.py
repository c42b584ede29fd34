"""Parsing a DynamoDB export's manifests and lines, and ordering their versions (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from syncer.core.exports import (
    ExportFormatError,
    incremental_version,
    md5_matches,
    parse_line,
    parse_manifest_files,
    parse_summary,
)
from syncer.core.versions import Order, change_version, compare, read_version
from syncer.errors import ConfigError

FULL = {
    "exportArn": "arn:aws:dynamodb:us-east-1:1:table/t/export/01",
    "exportTime": "2020-11-04T07:28:34.028Z",
    "s3Bucket": "b",
    "manifestFilesS3Key": "p/AWSDynamoDB/01/manifest-files.json",
    "itemCount": 3,
    "outputFormat": "DYNAMODB_JSON",
}
EXPORT_MS = 1604474914028
KEYS = ["pk", "sk"]


def _summary(**changes: object) -> bytes:
    return json.dumps({**FULL, **changes}).encode()


def test_a_full_exports_version_is_a_read_a_minute_either_side_of_export_time() -> None:
    """exportTime plus or minus 60 s, as AWS documents the export's point in time."""
    summary = parse_summary(_summary())
    assert not summary.is_incremental
    assert summary.read_version.read_from_ms == EXPORT_MS - 60_000
    assert summary.read_version.read_to_ms == EXPORT_MS + 60_000 + 1


def test_an_incremental_summary_carries_its_window() -> None:
    """exportType INCREMENTAL_EXPORT with its from and to times."""
    summary = parse_summary(
        _summary(
            exportType="INCREMENTAL_EXPORT",
            exportFromTime="2020-11-04T07:00:00.000Z",
            exportToTime="2020-11-04T07:15:00.000Z",
        )
    )
    assert summary.is_incremental
    assert summary.to_time_ms is not None
    assert summary.from_time_ms is not None
    assert summary.to_time_ms - summary.from_time_ms == 15 * 60_000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"outputFormat": "ION"}, "DYNAMODB_JSON"),
        ({"exportTime": "yesterday"}, "ISO 8601"),
        ({"itemCount": -1}, "itemCount"),
        ({"manifestFilesS3Key": None}, "manifestFilesS3Key"),
        ({"exportType": "PARTIAL"}, "exportType"),
    ],
)
def test_a_bad_summary_is_refused_with_the_field(changes: dict[str, object], message: str) -> None:
    """ION output, bad times and counts, missing keys: a clear error naming what is wrong."""
    with pytest.raises(ExportFormatError, match=message):
        parse_summary(_summary(**changes))


def test_manifest_files_must_add_up_to_the_summary() -> None:
    """Per-file counts that do not sum to the summary's itemCount mean an incomplete export."""
    summary = parse_summary(_summary())
    lines = [
        {"itemCount": 2, "md5Checksum": "x", "dataFileS3Key": "d/1.json.gz"},
        {"itemCount": 0, "md5Checksum": "y", "dataFileS3Key": "d/2.json.gz"},
    ]
    raw = b"\n".join(json.dumps(line).encode() for line in lines)
    with pytest.raises(ExportFormatError, match=r"lists 2 items in 2 files.*says 3"):
        parse_manifest_files(raw, summary)
    lines[1]["itemCount"] = 1
    files = parse_manifest_files(b"\n".join(json.dumps(line).encode() for line in lines), summary)
    assert [f.key for f in files] == ["d/1.json.gz", "d/2.json.gz"]


def test_md5_is_compared_with_the_base64_checksum() -> None:
    """The manifest's md5Checksum is base64 of the digest; garbage never matches."""
    import base64
    import hashlib

    digest = hashlib.md5(b"abc", usedforsecurity=False).digest()
    assert md5_matches(digest, base64.b64encode(digest).decode())
    assert not md5_matches(digest, "not base64!")


def test_a_full_line_is_its_item_with_the_exports_version() -> None:
    """{"Item": ...}: its key attributes picked out, the summary's read version attached."""
    summary = parse_summary(_summary())
    raw = json.dumps({"Item": {"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "5"}}})
    line = parse_line(raw, summary, KEYS, "f line 1")
    assert line.keys == {"pk": {"S": "a"}, "sk": {"S": "1"}}
    assert line.new_image is not None
    assert line.version == summary.read_version
    with pytest.raises(ExportFormatError, match="lacks the key"):
        parse_line(json.dumps({"Item": {"pk": {"S": "a"}}}), summary, KEYS, "f line 2")


def test_an_incremental_line_without_new_image_is_a_delete() -> None:
    """Keys, WriteTimestampMicros and no NewImage: a delete at that instant."""
    summary = parse_summary(
        _summary(
            exportType="INCREMENTAL_EXPORT",
            exportFromTime="2020-11-04T07:00:00Z",
            exportToTime="2020-11-04T07:15:00Z",
        )
    )
    raw = {
        "Metadata": {"WriteTimestampMicros": {"N": "1604473200123456"}},
        "Keys": {"pk": {"S": "a"}, "sk": {"S": "1"}},
        "OldImage": {"pk": {"S": "a"}, "sk": {"S": "1"}},
    }
    line = parse_line(json.dumps(raw), summary, KEYS, "f line 1")
    assert line.new_image is None
    assert line.version == incremental_version(1604473200123456)
    with pytest.raises(ExportFormatError, match="WriteTimestampMicros"):
        parse_line(json.dumps({"Keys": raw["Keys"]}), summary, KEYS, "f line 2")


STREAM = "arn:aws:dynamodb:us-east-1:1:table/t/stream/2020-11-01T00:00:00.000"


@pytest.mark.parametrize(
    ("change_offset_s", "expected"),
    [
        (-3.0, Order.OLDER),  # the write the line holds came after the change: the line wins
        (-0.5, Order.UNKNOWN),  # a change inside the same second: read the item again
        (0.0, Order.UNKNOWN),
        (0.9, Order.UNKNOWN),
        (3.0, Order.NEWER),  # a change certainly after the line's write
    ],
)
def test_an_incremental_line_orders_against_stream_changes_by_its_write_time(
    change_offset_s: float, expected: Order
) -> None:
    """WriteTimestampMicros against a change's whole second: the clock slack makes a tie UNKNOWN."""
    written_s = 1_700_000_000.25
    line = incremental_version(int(written_s * 1_000_000))
    change = change_version(1, STREAM, float(int(written_s + change_offset_s)))
    assert compare(change, line) is expected


def test_an_incremental_line_and_a_scan_order_with_the_clock_slack() -> None:
    """A scan that ended less than the clock slack (twice the clock margin: two readers' clocks)
    before the write cannot be ordered: re-read."""
    written_s = 1_700_000_000.0
    line = incremental_version(int(written_s * 1_000_000))
    assert compare(line, read_version(written_s - 5, written_s - 3)) is Order.NEWER
    assert compare(line, read_version(written_s - 5, written_s - 0.5)) is Order.UNKNOWN
    assert compare(line, read_version(written_s - 5, written_s - 1.5)) is Order.UNKNOWN
    assert compare(line, read_version(written_s + 3, written_s + 4)) is Order.OLDER


def test_read_ahead_yields_in_order_then_raises_the_producers_error() -> None:
    """Pages come in order; an error at the end of the file reaches the consumer after them."""
    from syncer.commands.exports import read_ahead

    def pages() -> Iterator[int]:
        yield from range(5)
        raise ExportFormatError("md5 differs")

    seen: list[int] = []
    with pytest.raises(ExportFormatError, match="md5 differs"):
        seen.extend(read_ahead(pages()))
    assert seen == [0, 1, 2, 3, 4]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    """Leaving the loop (a failed write) closes the file's generator instead of reading on."""
    from syncer.commands.exports import read_ahead

    produced = []
    closed = []

    def pages() -> Iterator[int]:
        try:
            for number in range(1000):
                produced.append(number)
                yield number
        finally:
            closed.append(True)

    reader = read_ahead(pages())
    assert next(reader) == 0
    reader.close()
    assert closed == [True]
    assert len(produced) < 10


def test_scan_workers_are_checked_before_anything_is_created() -> None:
    """--workers 0 is refused before any client is used."""
    from syncer.commands import exports

    with pytest.raises(ConfigError, match="--workers"):
        exports.reindex_scan_in_workers(None, None, "t", segments=4, workers=0)  # type: ignore[arg-type]
