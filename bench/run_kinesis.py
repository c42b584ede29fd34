"""``syncer run --once`` on a table's DynamoDB stream against the same changes on Kinesis (issue 25).

On the local services: a table of ``--items`` catalog items (then ``--updates`` changes of
them) in the emulator; its DynamoDB stream republished to a 2-shard Kinesis stream by the test
bridge (shuffled, 10% duplicates, as AWS may deliver); each source followed by the worker of
``syncer run --once`` into its own fresh index, the two taking turns run by run. Then a
``--from`` replay of the whole Kinesis stream over what was applied (every change skipped as
not newer). Records/s of wall time, batch ``--batch-size``; the emulator's and OpenSearch's
speed on this machine dominate, so compare the sources with each other, not with production.

    .venv/bin/python bench/run_kinesis.py [--items 2000] [--updates 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    catalog_item,
    header,
    median,
    setup_index,
    teardown_index,
    use_services_env,
    write_config,
)


def _write_table(dynamodb: Any, table: str, items: int, updates: int) -> None:
    for start in range(0, items, 25):
        requests = [
            {"PutRequest": {"Item": catalog_item(n)}} for n in range(start, min(items, start + 25))
        ]
        dynamodb.batch_write_item(RequestItems={table: requests})
    for n in range(updates):
        item = catalog_item(n % items)
        item["price"] = {"N": str(100 + n)}
        dynamodb.put_item(TableName=table, Item=item)


def _timed(label: str, run: Any) -> tuple[float, int]:
    started = time.perf_counter()
    summary = run()
    elapsed = time.perf_counter() - started
    print(f"  {label}: {summary.records:,} records in {elapsed:.1f} s", flush=True)
    return summary.records / elapsed, summary.records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    use_services_env()
    logging.disable(logging.WARNING)  # a log line per batch (and per retry) would be timed too

    from syncer.config import load_config
    from syncer.demo import create_catalog_table
    from syncer.runner.poller import PollOptions
    from syncer.runner.run import run_poller
    from syncer.runner.streams import table_stream_arn
    from syncer.runner.window import ReplayWindow
    from syncer.sinks.build import aws_client
    from tests.kinesis_bridge import Delivery, TableToKinesisBridge, create_kinesis_stream

    header("syncer run --once: DynamoDB Streams vs Kinesis, and a Kinesis replay")
    suffix = uuid.uuid4().hex[:8]
    table, stream = f"bench-run-{suffix}", f"bench-run-{suffix}"
    work = Path(f"/tmp/syncer-bench-run-kinesis-{suffix}")
    work.mkdir()
    configs = {
        source: write_config(work / f"{source}.toml", table, f"bench-run-{source}-{suffix}")
        for source in ("streams", "kinesis")
    }
    dynamodb, kinesis = aws_client("dynamodb"), aws_client("kinesis")
    create_catalog_table(dynamodb, table)
    create_kinesis_stream(kinesis, stream, shard_count=2)
    started = dt.datetime.now(dt.UTC)
    try:
        _write_table(dynamodb, table, args.items, args.updates)
        _, stream_arn = table_stream_arn(dynamodb, table)
        bridge = TableToKinesisBridge(
            aws_client("dynamodbstreams"),
            kinesis,
            stream_arn,
            table,
            stream,
            dynamodb.meta.region_name,
            "MILLISECOND",
            Delivery(seed=1, shuffle=True, duplicate_share=0.1),
        )
        published = len(bridge.pump())
        print(
            f"  {args.items:,} items, {args.updates:,} updates; {published:,} Kinesis records "
            f"(2 shards); batch size {args.batch_size}",
            flush=True,
        )
        options = PollOptions(once=True, idle_sleep_s=0.05, batch_size=args.batch_size)
        rates: dict[str, list[float]] = {"streams": [], "kinesis": [], "replay": []}
        for run in range(args.runs):
            for source in ("streams", "kinesis") if run % 2 == 0 else ("kinesis", "streams"):
                setup_index(configs[source], fresh=True)
                config = load_config(str(configs[source]))
                checkpoints = work / f"{source}-{run}.json"
                kinesis_streams = [stream] if source == "kinesis" else []
                rate, _ = _timed(
                    f"run {run + 1} {source}",
                    lambda c=config, p=checkpoints, k=kinesis_streams: run_poller(
                        c, options, checkpoint_file=str(p), kinesis_streams=k
                    ),
                )
                rates[source].append(rate)
            window = ReplayWindow(started - dt.timedelta(minutes=1), dt.datetime.now(dt.UTC), 0)
            config = load_config(str(configs["kinesis"]))
            rate, _ = _timed(
                f"run {run + 1} replay over applied",
                lambda c=config, w=window, r=run: run_poller(
                    c,
                    options,
                    checkpoint_file=str(work / f"replay-{r}.json"),
                    kinesis_streams=[stream],
                    replay=w,
                ),
            )
            rates["replay"].append(rate)
        print("\n| what | median records/s | min | max |\n|---|---|---|---|")
        for what, values in rates.items():
            print(f"| {what} | {median(values):,.0f} | {min(values):,.0f} | {max(values):,.0f} |")
        for what, values in rates.items():
            print(f"RESULT run_records_per_s source={what} median={median(values):.0f}")
    finally:
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        dynamodb.delete_table(TableName=table)
        for path in configs.values():
            teardown_index(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
