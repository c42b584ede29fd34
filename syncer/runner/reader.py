"""The DynamoDB Streams edge of ``syncer run``: stream ARNs, shards, iterators and records; and
``ShardReader``, what it shares with the Kinesis edge (``syncer.runner.kinesisreader``).

Every call is retried by the reader's own guard, without a breaker: a stream's expired-iterator
and trimmed-data answers are expected, not signs of ill health.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import tenacity
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
from syncer.runner.shards import Shard, describe_shards
from syncer.runner.streams import table_stream_arn, to_lambda_record
from syncer.sinks.resilience import Downstream


class ShardReader:
    """What every source's reader shares: each call through its guard's retry, a failed read
    as the ``ReadFailed`` event, the backoff of a shard's failures in a row.

    A source (``StreamReader``, ``syncer.runner.kinesisreader.KinesisReader``) lists a stream's
    shards (``describe``) and answers the cursor's ``GetIterator`` and ``ReadRecords``
    (``_read``) with records shaped as Lambda delivers them.
    """

    def __init__(self, guard: Downstream) -> None:
        self.guard = guard

    def describe(self, stream_arn: str) -> list[Shard]:
        """Every shard of the stream, parents and children, every page."""
        raise NotImplementedError

    def read(self, stream_arn: str, shard_id: str, action: GetIterator | ReadRecords) -> Event:
        """GetShardIterator or GetRecords as the event it makes; a failure as ``ReadFailed``."""
        try:
            return self._read(stream_arn, shard_id, action)
        except Exception as error:  # noqa: BLE001 - a shard's read errors must not stop the others
            if isinstance(error, ClientError):
                code = error.response.get("Error", {}).get("Code", "")
                return ReadFailed(code, f"{code}: {error}")
            return ReadFailed("", f"{type(error).__name__}: {error}")

    def backoff_s(self, failures: int) -> float:
        """The guard's wait after ``failures`` failed attempts (``backoff_s``)."""
        return backoff_s(self.guard, failures)

    def _read(self, stream_arn: str, shard_id: str, action: GetIterator | ReadRecords) -> Event:
        raise NotImplementedError

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        for attempt in self.guard.retrying():
            with attempt:
                return function(*args, **kwargs)
        raise AssertionError("unreachable: tenacity reraises the last error")


class StreamReader(ShardReader):
    """A table's stream read through boto3's DynamoDB Streams client and the reader's guard."""

    def __init__(self, streams: Any, dynamodb: Any, resilience: ResilienceConfig) -> None:
        super().__init__(Downstream("dynamodbstreams", resilience))
        self.streams = streams  # boto3 clients: untyped
        self.dynamodb = dynamodb
        self._region: str = streams.meta.region_name

    def stream_arn(self, table: str) -> str:
        """The table's latest stream ARN; a ConfigError when it has none or cannot be read."""
        try:
            _, stream_arn = self._call(table_stream_arn, self.dynamodb, table)
        except RuntimeError as error:
            raise ConfigError(str(error)) from None
        except ClientError as error:
            raise ConfigError(f"cannot read table {table!r}: {error}") from None
        except Exception as error:  # say which table, keep the cause
            raise DownstreamUnavailableError(
                f"cannot reach DynamoDB for table {table!r}: {error}"
            ) from error
        return str(stream_arn)

    def describe(self, stream_arn: str) -> list[Shard]:
        """DescribeStream, every page."""
        return describe_shards(
            functools.partial(self._call, self.streams.describe_stream), stream_arn
        )

    def _read(self, stream_arn: str, shard_id: str, action: GetIterator | ReadRecords) -> Event:
        if isinstance(action, GetIterator):
            request: dict[str, Any] = {
                "StreamArn": stream_arn,
                "ShardId": shard_id,
                "ShardIteratorType": action.start.kind,
            }
            if action.start.sequence_number is not None:
                request["SequenceNumber"] = action.start.sequence_number
            response = self._call(self.streams.get_shard_iterator, **request)
            return IteratorObtained(response["ShardIterator"], time.monotonic())
        response = self._call(
            self.streams.get_records, ShardIterator=action.iterator, Limit=action.limit
        )
        records = tuple(
            to_lambda_record(r, stream_arn, self._region) for r in response.get("Records", [])
        )
        return RecordsRead(records, response.get("NextShardIterator"), time.monotonic())


def backoff_s(guard: Downstream, failures: int) -> float:
    """How long ``guard``'s own retry policy waits after ``failures`` failed attempts.

    A shard's retries span loop passes (other shards go on meanwhile), so they cannot run inside
    tenacity's loop; they take its wait (jittered exponential, capped) instead of a second one.
    """
    retrying = guard.retrying()
    state = tenacity.RetryCallState(retrying, None, (), {})
    state.attempt_number = failures
    return float(retrying.wait(state))
