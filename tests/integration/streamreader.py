"""Test helper: every record of a stream as Lambda would deliver it (the poller has its own loop)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from syncer.runner.streams import ordered_shards, to_lambda_record


def stream_shards(streams: Any, stream_arn: str) -> list[Mapping[str, Any]]:
    """Every shard of a DynamoDB stream (all DescribeStream pages), parents before children."""
    shards: list[Mapping[str, Any]] = []
    start: dict[str, Any] = {}
    while True:
        description = streams.describe_stream(StreamArn=stream_arn, **start)["StreamDescription"]
        shards.extend(description.get("Shards", []))
        last = description.get("LastEvaluatedShardId")
        if not last:
            break
        start = {"ExclusiveStartShardId": last}
    return ordered_shards(shards)


def read_stream(
    streams: Any, stream_arn: str, region: str, limit: int = 1000
) -> Iterator[list[dict[str, Any]]]:
    """Yield every record currently in the stream, shard by shard from TRIM_HORIZON, in pages."""
    for shard in stream_shards(streams, stream_arn):
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator, Limit=limit)
            records = response.get("Records", [])
            if not records:
                break
            yield [to_lambda_record(r, stream_arn, region) for r in records]
            iterator = response.get("NextShardIterator")
