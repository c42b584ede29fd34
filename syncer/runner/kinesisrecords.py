"""Kinesis records read outside Lambda, in the shape of Lambda's Kinesis event records (pure).

``process_batch`` takes what Lambda hands the function; a reader of its own (KCL's
MultiLangDaemon, or GetRecords) builds the same records here, so there is one pipeline.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from typing import Any


def lambda_kinesis_record(
    *,
    data_base64: str,
    sequence_number: str,
    partition_key: str,
    arrival_s: float,
    stream_arn: str,
    shard_id: str,
) -> dict[str, Any]:
    """One Kinesis record as a record of Lambda's Kinesis event.

    ``stream_arn`` is ``arn:aws:kinesis:REGION:ACCOUNT:stream/NAME``; the record's region comes
    from it, as Lambda's does. ``arrival_s`` is ``approximateArrivalTimestamp`` in epoch seconds.
    """
    parts = stream_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "kinesis":
        raise ValueError(f"not a Kinesis stream ARN: {stream_arn!r:.120}")
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": data_base64,
            "approximateArrivalTimestamp": arrival_s,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "awsRegion": parts[3],
        "eventSourceARN": stream_arn,
    }


def from_get_records(record: Mapping[str, Any], stream_arn: str, shard_id: str) -> dict[str, Any]:
    """A record of boto3's Kinesis GetRecords (``Data`` bytes, a datetime) as Lambda's."""
    arrival = record["ApproximateArrivalTimestamp"]
    return lambda_kinesis_record(
        data_base64=base64.b64encode(record["Data"]).decode("ascii"),
        sequence_number=record["SequenceNumber"],
        partition_key=record["PartitionKey"],
        arrival_s=arrival.timestamp() if isinstance(arrival, dt.datetime) else float(arrival),
        stream_arn=stream_arn,
        shard_id=shard_id,
    )
