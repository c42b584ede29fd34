"""A table's stream ARN, its shards parents first, and GetRecords records shaped as Lambda's
(Kinesis records: ``syncer.runner.kinesisrecords``)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any


def table_stream_arn(dynamodb: Any, table: str) -> tuple[str, str]:
    """(table ARN, latest stream ARN) of ``table``; a clear error when streams are off."""
    description = dynamodb.describe_table(TableName=table)["Table"]
    stream_arn = description.get("LatestStreamArn")
    if not stream_arn or not description.get("StreamSpecification", {}).get("StreamEnabled", True):
        raise RuntimeError(f"table {table!r} has no stream enabled (StreamSpecification)")
    return description["TableArn"], stream_arn


def _lambda_json(value: Any) -> Any:
    # GetRecords via boto3 gives bytes for B and datetimes; Lambda's JSON has base64 and seconds.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, Mapping):
        return {k: _lambda_json(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_lambda_json(v) for v in value]
    return value


def to_lambda_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record in the shape of a Lambda DynamoDB event record."""
    shaped: dict[str, Any] = _lambda_json(record)
    shaped.setdefault("eventSource", "aws:dynamodb")
    shaped.setdefault("awsRegion", region)
    shaped["eventSourceARN"] = stream_arn
    return shaped


def parent_ids(shard: Mapping[str, Any]) -> list[str]:
    """A shard's parents: ``ParentShardId``, and a Kinesis merge's ``AdjacentParentShardId``."""
    return [
        parent
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
        if isinstance(parent, str) and parent
    ]


def ordered_shards(shards: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Shards with every parent before its children (a parent must be read to its end first)."""
    by_id = {shard["ShardId"]: shard for shard in shards}
    ordered: list[Mapping[str, Any]] = []
    seen: set[str] = set()

    def visit(shard: Mapping[str, Any]) -> None:
        if shard["ShardId"] in seen:
            return
        seen.add(shard["ShardId"])
        for parent_id in parent_ids(shard):
            parent = by_id.get(parent_id)
            if parent is not None:
                visit(parent)
        ordered.append(shard)

    for shard in shards:
        visit(shard)
    return ordered
