"""The Kinesis Data Streams edge of ``syncer run``: a stream's name and ARN, ListShards,
GetShardIterator and GetRecords, records shaped as Lambda delivers them, a replay's window.

The records are handed to ``process_batch`` exactly as the Lambda handler gets them, so the
one decoder (``syncer.core.kinesis``) reads them; each record's table is its ``tableName``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from syncer.config import ResilienceConfig
from syncer.errors import ConfigError, DownstreamUnavailableError
from syncer.runner.cursor import (
    Event,
    GetIterator,
    IteratorObtained,
    ReadFailed,
    ReadRecords,
    RecordsRead,
)
from syncer.runner.kinesisrecords import from_get_records
from syncer.runner.reader import ShardReader
from syncer.runner.shards import Shard
from syncer.runner.window import ReplayWindow, cut_read
from syncer.sinks.resilience import Downstream

log = logging.getLogger("syncer.run")

# Kinesis has no TrimmedDataAccessException: an iterator AFTER a checkpoint whose record has
# been trimmed answers no records, again and again, at MillisBehindLatest equal to the stream's
# retention (users of other consumers report it stuck there for good). An empty first read from
# a checkpoint that far behind is taken as the trim it is; the slack covers the time between
# the trim and the read.
TRIMMED_SLACK_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class KinesisStream:
    """A Kinesis stream as ``syncer run`` follows it."""

    name: str
    arn: str
    retention_hours: int | None = None


def stream_name_of(name_or_arn: str) -> tuple[str, str | None]:
    """(stream name, region named by the ARN or None) of a name or an ARN
    (``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME``)."""
    if not name_or_arn.startswith("arn:"):
        return name_or_arn, None
    parts = name_or_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "kinesis" or not parts[5].startswith("stream/"):
        raise ConfigError(
            f"{name_or_arn!r} is not a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:"
            "stream/NAME)"
        )
    return parts[5].removeprefix("stream/"), parts[3]


class KinesisReader(ShardReader):
    """Kinesis streams read through boto3's Kinesis client and the reader's guard.

    With a ``window`` (a replay) a shard ends at the window's end (``syncer.runner.window``).
    ``clock`` gives syncer's epoch seconds (tests move it).
    """

    def __init__(
        self,
        kinesis: Any,
        resilience: ResilienceConfig,
        window: ReplayWindow | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(Downstream("kinesis", resilience))
        self.kinesis = kinesis  # a boto3 client: untyped
        self.window = window
        self.clock = clock
        self._region: str = kinesis.meta.region_name
        self._names: dict[str, str] = {}  # ARN -> name
        self._closed: dict[str, set[str]] = {}  # ARN -> shards with an EndingSequenceNumber
        self._retention_ms: dict[str, int] = {}  # ARN -> RetentionPeriodHours in ms
        # (ARN, shard) -> the checkpoint its iterator starts after, until a read returns records
        self._after_checkpoint: dict[tuple[str, str], str] = {}

    def open(self, name_or_arn: str) -> KinesisStream:
        """The stream a name or an ARN names (DescribeStreamSummary); a ConfigError when it
        does not exist or lies in another region than syncer's AWS settings."""
        name, region = stream_name_of(name_or_arn)
        if region is not None and region != self._region:
            raise ConfigError(
                f"Kinesis stream {name_or_arn!r} is in region {region}, but syncer's AWS region "
                f"is {self._region} (AWS_REGION / AWS_DEFAULT_REGION)"
            )
        try:
            summary = self._call(self.kinesis.describe_stream_summary, StreamName=name)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise ConfigError(f"Kinesis stream {name!r} does not exist") from None
            raise ConfigError(f"cannot read Kinesis stream {name!r}: {error}") from None
        except Exception as error:  # say which stream, keep the cause
            raise DownstreamUnavailableError(
                f"cannot reach Kinesis for stream {name!r}: {error}"
            ) from error
        description = summary["StreamDescriptionSummary"]
        arn = str(description["StreamARN"])
        if name_or_arn.startswith("arn:") and arn != name_or_arn:
            # Reads name the stream, so an ARN of another account would silently read ours.
            raise ConfigError(
                f"Kinesis stream {name_or_arn!r} is not in the account of syncer's AWS "
                f"credentials (the stream of that name there is {arn}); cross-account streams "
                "are not supported"
            )
        self._names[arn] = name
        retention = description.get("RetentionPeriodHours")
        if retention is not None:
            self._retention_ms[arn] = int(retention) * 3_600_000
        return KinesisStream(name, arn, int(retention) if retention is not None else None)

    def describe(self, stream_arn: str) -> list[Shard]:
        """ListShards, every page (a page token replaces the stream's name)."""
        shards: list[Shard] = []
        request: dict[str, Any] = {"StreamName": self._names[stream_arn]}
        while True:
            page = self._call(self.kinesis.list_shards, **request)
            shards.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                break
            request = {"NextToken": token}
        self._closed[stream_arn] = {
            shard["ShardId"]
            for shard in shards
            if shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        }
        return shards

    def _read(self, stream_arn: str, shard_id: str, action: GetIterator | ReadRecords) -> Event:
        if isinstance(action, GetIterator):
            start = action.start
            request: dict[str, Any] = {
                "StreamName": self._names[stream_arn],
                "ShardId": shard_id,
                "ShardIteratorType": start.kind,
            }
            if start.sequence_number is not None:
                request["StartingSequenceNumber"] = start.sequence_number
            if start.timestamp_s is not None:
                request["Timestamp"] = dt.datetime.fromtimestamp(start.timestamp_s, dt.UTC)
            response = self._call(self.kinesis.get_shard_iterator, **request)
            if start.kind in ("AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER"):
                self._after_checkpoint[(stream_arn, shard_id)] = str(start.sequence_number)
            else:
                self._after_checkpoint.pop((stream_arn, shard_id), None)
            return IteratorObtained(response["ShardIterator"], time.monotonic())
        response = self._call(
            self.kinesis.get_records, ShardIterator=action.iterator, Limit=action.limit
        )
        raw = response.get("Records", [])
        following = response.get("NextShardIterator")
        behind = response.get("MillisBehindLatest")
        checkpoint = self._after_checkpoint.pop((stream_arn, shard_id), None)
        trimmed = self._trimmed(stream_arn, shard_id, checkpoint, bool(raw), behind)
        if trimmed is not None:
            return trimmed
        # A closed shard read to its end answers without a next iterator. The emulator keeps
        # answering with one, so a closed shard (ListShards gave its EndingSequenceNumber) that
        # has nothing left to read (no records, at the stream's newest) ends here too.
        if not raw and behind == 0 and shard_id in self._closed.get(stream_arn, set()):
            following = None
        if self.window is not None:
            arrivals = [_epoch_s(record["ApproximateArrivalTimestamp"]) for record in raw]
            cut = cut_read(self.window, arrivals, behind, self.clock())
            raw = raw[: cut.keep]
            if cut.done:
                following = None
        records = tuple(from_get_records(record, stream_arn, shard_id) for record in raw)
        # An empty read behind the shard's newest record crossed an idle stretch: not caught up.
        more_follow = following is not None and not records and bool(behind)
        return RecordsRead(records, following, time.monotonic(), more_follow)

    def _trimmed(
        self,
        stream_arn: str,
        shard_id: str,
        checkpoint: str | None,
        any_records: bool,
        behind: object,
    ) -> ReadFailed | None:
        """The first read after a checkpoint, empty and a whole retention behind the newest
        record: the checkpoint's record was trimmed (a gap; the cursor restarts at
        TRIM_HORIZON and counts it). Else None."""
        retention_ms = self._retention_ms.get(stream_arn)
        if checkpoint is None or any_records or retention_ms is None:
            return None
        if not isinstance(behind, int) or behind < retention_ms - TRIMMED_SLACK_MS:
            return None
        log.warning(
            "Kinesis stream %s shard %s: the read after checkpoint %s returned nothing %d ms "
            "behind the newest record, the stream's whole retention (%d h): that record was "
            "trimmed",
            self._names.get(stream_arn, stream_arn),
            shard_id,
            checkpoint,
            behind,
            retention_ms // 3_600_000,
        )
        return ReadFailed(
            "TrimmedDataAccessException",
            f"TrimmedDataAccessException: checkpoint {checkpoint} is past Kinesis' retention",
        )


def _epoch_s(moment: object) -> float:
    if isinstance(moment, dt.datetime):
        return moment.timestamp()
    if isinstance(moment, int | float):
        return float(moment)
    raise TypeError(f"ApproximateArrivalTimestamp is neither a datetime nor a number: {moment!r}")
