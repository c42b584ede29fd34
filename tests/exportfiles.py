"""DynamoDB exports written in AWS's documented layout (REFERENCE.md), for tests and the bench.

moto implements neither manifests nor incremental exports, so tests write the layout
themselves into an S3 bucket: ``manifest-summary.json``, ``manifest-files.json`` (JSON lines),
their ``.md5`` files, ``_started`` and ``data/*.json.gz``.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WrittenExport:
    uri: str  # the export's folder: s3://bucket/prefix/AWSDynamoDB/<id>
    bucket: str
    data_keys: list[str]
    export_time: dt.datetime


def _iso(when: dt.datetime) -> str:
    return (
        when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    )


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def ensure_bucket(s3: Any, bucket: str) -> None:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)


def gzip_lines(lines: Sequence[Mapping[str, Any]]) -> bytes:
    return gzip.compress(b"".join(json.dumps(line).encode() + b"\n" for line in lines), mtime=0)


def write_export(
    s3: Any,
    bucket: str,
    files: Sequence[Sequence[Mapping[str, Any]]],
    *,
    export_time: dt.datetime | None = None,
    incremental: tuple[dt.datetime, dt.datetime] | None = None,
    prefix: str = "exports",
    claimed_counts: Mapping[int, int] | None = None,
    table: str = "t",
    table_arn: str | None = None,
) -> WrittenExport:
    """One export of ``table`` whose data files hold ``files`` (lines as dicts; an empty list:
    an empty file).

    Full exports take lines ``{"Item": ...}``; incremental ones ``{"Metadata": ..., "Keys": ...,
    "NewImage": ...}``. ``incremental`` is (exportFromTime, exportToTime). ``tableArn`` is the
    ARN the emulator gives ``table`` unless ``table_arn`` says otherwise ("" leaves it out).
    """
    if table_arn is None:
        table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    ensure_bucket(s3, bucket)
    export_id = f"{int(dt.datetime.now(dt.UTC).timestamp() * 1000):014d}-{uuid.uuid4().hex[:8]}"
    folder = f"{prefix}/AWSDynamoDB/{export_id}"
    when = export_time or dt.datetime.now(dt.UTC)
    s3.put_object(Bucket=bucket, Key=f"{folder}/_started", Body=b"")
    manifest_lines = []
    keys = []
    for number, lines in enumerate(files):
        body = gzip_lines(lines)
        key = f"{folder}/data/{uuid.uuid4().hex[:8]}-{number}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
        manifest_lines.append(
            {
                "itemCount": (claimed_counts or {}).get(number, len(lines)),
                "md5Checksum": _md5_b64(body),
                "etag": hashlib.md5(body, usedforsecurity=False).hexdigest(),
                "dataFileS3Key": key,
            }
        )
    manifest = "".join(json.dumps(line) + "\n" for line in manifest_lines).encode()
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body=manifest)
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.md5", Body=_md5_b64(manifest))
    summary: dict[str, Any] = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn or 'arn:aws:dynamodb:us-east-1:123456789012:table/t'}"
        f"/export/{export_id}",
        "startTime": _iso(when),
        "endTime": _iso(when + dt.timedelta(minutes=10)),
        "tableArn": table_arn,
        "tableId": "0000",
        "exportTime": _iso(when),
        "s3Bucket": bucket,
        "s3Prefix": prefix,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{folder}/manifest-files.json",
        "billedSizeBytes": sum(len(json.dumps(line)) for lines in files for line in lines),
        "itemCount": sum(line["itemCount"] for line in manifest_lines),
        "outputFormat": "DYNAMODB_JSON",
    }
    if not table_arn:
        del summary["tableArn"]
    if incremental is not None:
        summary.update(
            exportType="INCREMENTAL_EXPORT",
            exportFromTime=_iso(incremental[0]),
            exportToTime=_iso(incremental[1]),
            outputView="NEW_AND_OLD_IMAGES",
        )
    raw = json.dumps(summary).encode()
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.json", Body=raw)
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.md5", Body=_md5_b64(raw))
    return WrittenExport(f"s3://{bucket}/{folder}", bucket, keys, when)


def full_line(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"Item": dict(item)}


def incremental_line(
    keys: Mapping[str, Any],
    written: dt.datetime,
    new_image: Mapping[str, Any] | None,
    old_image: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    micros = int(written.timestamp() * 1_000_000)
    line: dict[str, Any] = {
        "Metadata": {"WriteTimestampMicros": {"N": str(micros)}},
        "Keys": dict(keys),
    }
    if new_image is not None:
        line["NewImage"] = dict(new_image)
    if old_image is not None:
        line["OldImage"] = dict(old_image)
    return line


def split(items: Sequence[Any], files: int) -> list[list[Any]]:
    """``items`` spread over ``files`` files, as an export spreads keys by hash."""
    return [list(items[number::files]) for number in range(files)]
