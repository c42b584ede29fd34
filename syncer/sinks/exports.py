"""S3 I/O of a DynamoDB export: its manifests, and each data file streamed and checked.

A data file is read as a stream (gzip decompressed on the fly, one page of lines at a time),
so memory is bounded by the files in flight and the page size, never by a file's size. The
object's MD5 and its line count are checked against ``manifest-files.json`` at the end of the
stream: a caller that wrote the pages before must not count the file as loaded when
``read_pages`` raises (writes are idempotent, so reading the file again is harmless).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from syncer.core.exports import (
    SUMMARY_NAME,
    DataFile,
    ExportFormatError,
    ExportSummary,
    md5_matches,
    parse_manifest_files,
    parse_summary,
)
from syncer.errors import SyncerError

READ_CHUNK_BYTES = 1 << 20


class ExportFileError(SyncerError):
    """A data file could not be read whole, or is not what the manifest says (retried)."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/AWSDynamoDB/0170...-abcd`` -> (bucket, folder without a slash)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ExportFormatError(f"{uri!r} is not an s3://bucket/... URI of an export's folder")
    return parts.netloc, parts.path.strip("/")


class _Md5Reader:
    """A file-like view of an S3 body that hashes and counts every byte read through it."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self.body.read(size if size >= 0 else None)
        self.md5.update(chunk)
        self.size += len(chunk)
        return chunk

    def drain(self) -> None:
        """Hash what gzip left unread (trailing bytes), so the digest covers the whole object."""
        while self.read(READ_CHUNK_BYTES):
            pass


class ExportReader:
    """Reads one export's manifests and data files from S3 (a boto3 ``s3`` client)."""

    def __init__(self, s3: Any, uri: str) -> None:
        self.s3 = s3
        self.uri = uri
        self.bucket, self.folder = split_s3_uri(uri)

    def _get(self, bucket: str, key: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchBucket", "404", "AccessDenied", "403"):
                raise ExportFormatError(f"s3://{bucket}/{key}: {code}") from None
            raise ExportFileError(f"s3://{bucket}/{key}: {error}") from error
        except BotoCoreError as error:
            raise ExportFileError(f"s3://{bucket}/{key}: {error}") from error

    def summary(self) -> ExportSummary:
        """The export's ``manifest-summary.json``."""
        key = f"{self.folder}/{SUMMARY_NAME}" if self.folder else SUMMARY_NAME
        return parse_summary(self._get(self.bucket, key).read())

    def data_files(self, summary: ExportSummary) -> list[DataFile]:
        """The data files ``manifest-files.json`` lists (their counts checked against the summary)."""
        raw = self._get(summary.bucket, summary.manifest_files_key).read()
        return parse_manifest_files(raw, summary)

    def read_pages(
        self, summary: ExportSummary, data_file: DataFile, page_size: int
    ) -> Iterator[list[bytes]]:
        """The file's lines, ``page_size`` at a time; raises ``ExportFileError`` at the end when
        its MD5 or its line count disagrees with the manifest, or on any read failure."""
        from botocore.exceptions import BotoCoreError

        where = f"s3://{summary.bucket}/{data_file.key}"
        body = _Md5Reader(self._get(summary.bucket, data_file.key))
        count = 0
        page: list[bytes] = []
        try:
            with gzip.GzipFile(fileobj=body, mode="rb") as lines:  # type: ignore[call-overload]
                for line in lines:
                    if not line.strip():
                        continue
                    page.append(line)
                    count += 1
                    if len(page) >= page_size:
                        yield page
                        page = []
            body.drain()
        except (OSError, EOFError, BotoCoreError) as error:  # gzip.BadGzipFile is an OSError
            raise ExportFileError(f"{where}: {type(error).__name__}: {error}") from error
        if not md5_matches(body.md5.digest(), data_file.md5):
            raise ExportFileError(
                f"{where}: MD5 {body.md5.hexdigest()} differs from the manifest's "
                f"md5Checksum {data_file.md5} (a corrupt or replaced file)"
            )
        if count != data_file.item_count:
            raise ExportFileError(
                f"{where} holds {count} items, the manifest says {data_file.item_count}"
            )
        if page:
            yield page
