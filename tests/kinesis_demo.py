"""``make demo SOURCE=kinesis``: the README's demo with the table streamed to Kinesis.

The emulator cannot stream a table to Kinesis, so the test bridge (tests/kinesis_bridge.py)
publishes the demo table's changes to a Kinesis stream, shuffled and with duplicates as AWS
may deliver them, and the demo's worker follows that stream (``syncer run --kinesis-stream``).
A test tool, like the bridge: the shipped package never imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncer.config import Config
from syncer.demo import DEMO_TABLE, DemoReport, run_demo
from syncer.runner.streams import table_stream_arn
from tests.kinesis_bridge import Delivery, Precision, TableToKinesisBridge, create_kinesis_stream

DEMO_STREAM = "syncer-demo-changes"


@dataclass
class BridgeSource:
    """The demo table's changes, published to ``stream`` by the bridge before each sync."""

    dynamodb: Any
    streams: Any
    kinesis: Any
    stream: str
    precision: Precision = "MILLISECOND"
    delivery: Delivery = field(default_factory=lambda: Delivery(7, True, 0.2))
    _bridge: TableToKinesisBridge | None = field(default=None, init=False, repr=False)

    def publish(self, table: str) -> int:
        if self._bridge is None:  # the demo creates its table: its stream exists only now
            _, stream_arn = table_stream_arn(self.dynamodb, table)
            region = self.dynamodb.meta.region_name
            self._bridge = TableToKinesisBridge(
                self.streams,
                self.kinesis,
                stream_arn,
                table,
                self.stream,
                region,
                self.precision,
                self.delivery,
            )
        return len(self._bridge.pump())


def recreate_stream(kinesis: Any, name: str, shard_count: int = 2) -> None:
    """A fresh Kinesis stream ``name``: a previous run's records would be replayed otherwise."""
    try:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        kinesis.get_waiter("stream_not_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
    except kinesis.exceptions.ResourceNotFoundException:
        pass  # nothing to delete
    create_kinesis_stream(kinesis, name, shard_count)


def run_kinesis_demo(
    config: Config,
    item_count: int,
    echo: Callable[[str], None],
    table_name: str = DEMO_TABLE,
    stream: str = DEMO_STREAM,
) -> DemoReport:
    """The demo, its changes published to a fresh Kinesis stream ``stream`` and followed there."""
    from syncer.sinks.build import aws_client

    kinesis = aws_client("kinesis")
    echo(f"0. creating Kinesis stream {stream!r} (2 shards); the test bridge publishes the")
    echo("   table's changes to it shuffled and with duplicates, as AWS may deliver them")
    recreate_stream(kinesis, stream)
    source = BridgeSource(aws_client("dynamodb"), aws_client("dynamodbstreams"), kinesis, stream)
    return run_demo(config, item_count, echo, table_name=table_name, kinesis=source)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.kinesis_demo [--config FILE] [--items N]``: as ``syncer demo``."""
    import argparse

    from syncer.config import load_config

    parser = argparse.ArgumentParser(prog="python -m tests.kinesis_demo", description=__doc__)
    parser.add_argument("--config", help="configuration file (default: as syncer demo)")
    parser.add_argument("--items", type=int, default=20, help="how many catalog items to write")
    args = parser.parse_args(argv)
    run_kinesis_demo(load_config(args.config), args.items, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
