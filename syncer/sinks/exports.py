"""S3 I/O of a DynamoDB export: its manifests, and each data file checked, then streamed.

No line of a data file is handed out before the whole object's MD5 and its line count agree
with ``manifest-files.json``: a corrupt or replaced file must change nothing (a line applied
before the check would be visible in search, its cache keys cleared, until a retry). So the
compressed object is first copied into a spool while its MD5 is computed (in memory up to
``SPOOL_IN_MEMORY_BYTES``, then a temporary file that is deleted when closed), its lines are
counted, and only then is it decompressed again one page of lines at a time. Memory stays
bounded by the spool's memory part and the page size, never by a file's size; disk holds one
compressed file per file in flight.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from collections.abc import Iterator
from typing import IO, Any
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
# A compressed data file up to this size is spooled in memory, a larger one on disk.
SPOOL_IN_MEMORY_BYTES = 8 << 20


class ExportFileError(SyncerError):
    """A data file could not be read whole, or is not what the manifest says (retried)."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/AWSDynamoDB/0170...-abcd`` -> (bucket, folder without a slash)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ExportFormatError(f"{uri!r} is not an s3://bucket/... URI of an export's folder")
    return parts.netloc, parts.path.strip("/")


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

    def _checked_copy(self, summary: ExportSummary, data_file: DataFile) -> IO[bytes]:
        """The data file's compressed bytes, spooled, once its MD5 and line count match the
        manifest (``ExportFileError`` otherwise, or on any read failure); the caller closes it."""
        from botocore.exceptions import BotoCoreError

        where = f"s3://{summary.bucket}/{data_file.key}"
        # Closed by the caller, or here on any failure: no context manager can span both.
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            SPOOL_IN_MEMORY_BYTES, prefix="syncer-export-"
        )
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            body = self._get(summary.bucket, data_file.key)
            while chunk := body.read(READ_CHUNK_BYTES):
                md5.update(chunk)
                spool.write(chunk)
            if not md5_matches(md5.digest(), data_file.md5):
                raise ExportFileError(
                    f"{where}: MD5 {md5.hexdigest()} differs from the manifest's md5Checksum "
                    f"{data_file.md5} (a corrupt or replaced file); none of its lines was applied"
                )
            spool.seek(0)
            count = sum(1 for _ in _lines(spool))
            if count != data_file.item_count:
                raise ExportFileError(
                    f"{where} holds {count} items, the manifest says {data_file.item_count}"
                )
            spool.seek(0)
        except (OSError, EOFError, BotoCoreError) as error:  # gzip.BadGzipFile is an OSError
            spool.close()
            raise ExportFileError(f"{where}: {type(error).__name__}: {error}") from error
        except BaseException:
            spool.close()
            raise
        return spool

    def read_pages(
        self, summary: ExportSummary, data_file: DataFile, page_size: int
    ) -> Iterator[list[bytes]]:
        """The file's lines, ``page_size`` at a time, only once the whole file was checked
        (module docstring); ``ExportFileError`` before the first page when it disagrees with
        the manifest, or on any read failure."""
        where = f"s3://{summary.bucket}/{data_file.key}"
        with self._checked_copy(summary, data_file) as spool:
            page: list[bytes] = []
            try:
                for line in _lines(spool):
                    page.append(line)
                    if len(page) >= page_size:
                        yield page
                        page = []
            except (OSError, EOFError) as error:  # the spool, read a second time
                raise ExportFileError(f"{where}: {type(error).__name__}: {error}") from error
            if page:
                yield page


def _lines(compressed: IO[bytes]) -> Iterator[bytes]:
    """The non-blank lines of a gzip stream (every member of it)."""
    with gzip.GzipFile(fileobj=compressed, mode="rb") as lines:
        for line in lines:
            if line.strip():
                yield line
