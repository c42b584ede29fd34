"""Helper of tests/kcl/fleet_spike.sh: create/fill the Kinesis stream, summarise, clean up."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import boto3


def put(stream: str, start: int, count: int) -> None:
    """Put records {"n": start..start+count-1}, one partition key each; create the stream first."""
    kinesis = boto3.client("kinesis")
    if start == 0:
        kinesis.create_stream(StreamName=stream, ShardCount=4)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    for n in range(start, start + count):
        kinesis.put_record(StreamName=stream, PartitionKey=f"key-{n}", Data=json.dumps({"n": n}))


def summary(out: str, expected: int) -> None:
    """Events per worker, shards each worker initialised, and records missing or repeated."""
    events = [json.loads(line) for line in Path(out).read_text().splitlines()]
    print(sorted(Counter((e["worker"], e["event"]) for e in events).items()))
    print(sorted({(e["worker"], e["shard"]) for e in events if e["event"] == "initialize"}))
    seen = [json.loads(e["data"])["n"] for e in events if e["event"] == "record"]
    missing = sorted(set(range(expected)) - set(seen))
    print(
        f"records: {len(set(seen))} distinct of {expected}, missing {missing}, "
        f"delivered again {len(seen) - len(set(seen))}"
    )


def cleanup(stream: str, application: str) -> None:
    """Delete the stream and the tables KCL 3 created (leases, coordinator state, metrics)."""
    boto3.client("kinesis").delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    dynamodb = boto3.client("dynamodb")
    for table in (
        application,
        f"{application}-CoordinatorState",
        f"{application}-WorkerMetricStats",
    ):
        try:
            dynamodb.delete_table(TableName=table)
        except dynamodb.exceptions.ResourceNotFoundException:
            print(f"no table {table}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "put":
        put(args[0], int(args[1]), int(args[2]))
    elif command == "summary":
        summary(args[0], int(args[1]))
    elif command == "cleanup":
        cleanup(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}: put, summary or cleanup")
