"""Kinesis Data Streams for DynamoDB against DynamoDB Streams through ``lambda_handler`` (issue 25).

1. **Records/s** of the same changes delivered as DynamoDB Streams events and as Kinesis events
   (base64 of DynamoDB's JSON), batch 1,000, through the real ``lambda_handler`` with in-memory
   sinks (``tests/fakes.py``), so the figure is syncer's own cost and the only difference is the
   source's format and its version. The two take turns, run by run; CPU time of this process.
2. **Share of keys re-read** on a hot-key workload (Zipf over the keys): the same history of
   changes published at MILLISECOND and at MICROSECOND precision, delivered in order, batch by
   batch; a key is re-read when two of its changes cannot be ordered (the same millisecond).
   Item reads are counted at the sinks' item reader. The rate is of the whole table.

No network. Prints figures and ``RESULT`` lines.

    .venv/bin/python bench/kinesis.py [--records 10000] [--runs 7] [--rates 1000,10000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SEQUENCE_BASE,
    catalog_item,
    header,
    median,
    stream_record,
)
from syncer import handler
from syncer.config import Config, parse_config
from syncer.pipeline import process_batch
from tests.fakes import FakeItems, FakeSearch, fake_sinks

TABLE = "catalog"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/catalog-changes"
BATCH = 1000
T0_US = 1_704_067_200_000_000


def _config() -> Config:
    return parse_config(
        {
            "tables": [
                {
                    "name": TABLE,
                    "index": TABLE,
                    "cache_keys": ["product:{pk}", "product:{pk}:{sk}", "category:{category}"],
                    "exclude_attributes": ["cost"],
                }
            ]
        },
        environ={},
    )


def kinesis_record(stream: Mapping[str, Any], at: int, sequence: int) -> dict[str, Any]:
    """The Lambda Kinesis record of a DynamoDB Streams record's change, time ``at`` (ms/us)."""
    body = dict(stream["dynamodb"])
    for name in ("SequenceNumber", "StreamViewType"):
        body.pop(name)
    body["ApproximateCreationDateTime"] = at
    data = {
        "awsRegion": "us-east-1",
        "eventID": stream["eventID"],
        "eventName": stream["eventName"],
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": TABLE,
        "dynamodb": body,
        "eventSource": "aws:dynamodb",
    }
    text = json.dumps(data, separators=(",", ":")).encode()
    number = str(49_590_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000 + sequence)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": json.dumps(body["Keys"]),
            "sequenceNumber": number,
            "data": base64.b64encode(text).decode("ascii"),
            "approximateArrivalTimestamp": at / 1e6 if at > 10**14 else at / 1e3,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{number}",
        "eventName": "aws:kinesis:record",
        "awsRegion": "us-east-1",
        "eventSourceARN": KINESIS_ARN,
    }


def update_workload(records: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[int]]:
    """MODIFYs of a catalog (10% REMOVE), ~20% repeating a key of their batch; their times (us)."""
    rng = random.Random(seed)
    keys = max(1, int(records * 0.8))
    changes, times = [], []
    for n in range(records):
        number = rng.randrange(keys) if n % 5 else n % keys
        item = catalog_item(number, rng)
        event = "REMOVE" if rng.random() < 0.1 else "MODIFY"
        changes.append(
            stream_record(
                TABLE,
                item,
                SEQUENCE_BASE + n * 100,
                event,
                old_item=item,
                created_s=(T0_US + n * 1000) // 1_000_000,
            )
        )
        times.append(T0_US + n * 1000)
    return changes, times


def _install(sinks: Any, config: Config) -> None:
    handler._container = handler._Container(config, sinks)


def throughput(records: int, runs: int) -> None:
    """Records/s through lambda_handler, Streams events vs Kinesis events of the same changes.

    Two figures per source: the handler alone (the event already parsed), and the runtime's
    ``json.loads`` of the event text plus the handler, which is what a Lambda container spends
    per batch (a Streams event is nested DynamoDB JSON, a Kinesis event one base64 text a record,
    whose JSON the handler parses itself).
    """
    config = _config()
    streams, times = update_workload(records)
    kinesis = [kinesis_record(r, t, n) for n, (r, t) in enumerate(zip(streams, times, strict=True))]
    events = {
        "DynamoDB Streams": [
            json.dumps({"Records": streams[i : i + BATCH]}) for i in range(0, records, BATCH)
        ],
        "Kinesis": [
            json.dumps({"Records": kinesis[i : i + BATCH]}) for i in range(0, records, BATCH)
        ],
    }
    rates: dict[tuple[str, bool], list[float]] = {
        (name, parse): [] for name in events for parse in (False, True)
    }
    for _ in range(runs):
        for (name, parse), values in rates.items():
            search = FakeSearch()
            search.create(TABLE)
            _install(fake_sinks(search), config)
            texts = events[name]
            parsed = None if parse else [json.loads(text) for text in texts]
            started = time.process_time()
            for n, text in enumerate(texts):
                event = json.loads(text) if parsed is None else parsed[n]
                response = handler.lambda_handler(event, None)
                assert response == {"batchItemFailures": []}, response
            values.append(records / (time.process_time() - started))
    handler.reset_container()
    print(
        f"\n## records/s through lambda_handler, batch {BATCH:,}, {records:,} records "
        f"(update workload), {runs} runs, in-memory sinks"
    )
    print("| source | what is timed | median records/s | min | max |")
    print("|---|---|---|---|---|")
    for (name, parse), values in rates.items():
        timed = "json.loads of the event + handler" if parse else "handler"
        print(
            f"| {name} | {timed} | {median(values):,.0f} | {min(values):,.0f} | {max(values):,.0f} |"
        )
    for parse in (False, True):
        ratio = median(rates[("Kinesis", parse)]) / median(rates[("DynamoDB Streams", parse)])
        label = "with_event_parse" if parse else "handler_only"
        print(f"RESULT kinesis_vs_streams_records_per_s_ratio {label}={ratio:.3f}")


class CountingItems(FakeItems):
    """FakeItems that counts the keys it is asked to read."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_read = 0

    def read(self, table: str, keys: Sequence[Any], deadline: Any = None, ids: Any = None) -> Any:
        self.keys_read += len(keys)
        return super().read(table, keys, deadline, ids)


def hot_key_history(changes: int, keys: int, rate_per_s: int, seed: int) -> list[tuple[int, int]]:
    """(key number, true time in us) of each change: Zipf keys, Poisson arrivals at the rate."""
    rng = random.Random(seed)
    weights = [1 / (k + 1) for k in range(keys)]
    at = T0_US
    history = []
    for key in rng.choices(range(keys), weights=weights, k=changes):
        at += max(1, round(rng.expovariate(rate_per_s) * 1e6))
        history.append((key, at))
    return history


def reread_share(changes: int, keys: int, rate_per_s: int, precision: str) -> tuple[float, int]:
    """Share of (batch, key) pairs whose item was read again, and how many pairs there were."""
    config = _config()
    search, items = FakeSearch(), CountingItems()
    search.create(TABLE)
    sinks = fake_sinks(search, items=items)
    rng = random.Random(3)
    records = []
    for n, (key, at_us) in enumerate(hot_key_history(changes, keys, rate_per_s, seed=11)):
        item = catalog_item(key, rng)
        items.put(TABLE, item, ["pk", "sk"])  # catalog items are DynamoDB JSON already
        streams = stream_record(TABLE, item, SEQUENCE_BASE + n, "MODIFY", old_item=item)
        at = at_us if precision == "MICROSECOND" else at_us // 1000
        records.append(kinesis_record(streams, at, n))
    pairs = 0
    for start in range(0, len(records), BATCH):
        outcome = process_batch(records[start : start + BATCH], config, sinks)
        assert outcome.failed_sequence_numbers == ()
        pairs += outcome.keys
    return items.keys_read / pairs, pairs


def hot_keys(changes: int, keys: int, rates: Sequence[int]) -> None:
    print(
        f"\n## share of keys re-read, hot keys: {changes:,} changes over {keys:,} keys (Zipf), batch {BATCH:,}"
    )
    print("| table rate (changes/s) | MILLISECOND | MICROSECOND |")
    print("|---|---|---|")
    for rate in rates:
        shares = {
            p: reread_share(changes, keys, rate, p)[0] for p in ("MILLISECOND", "MICROSECOND")
        }
        print(f"| {rate:,} | {shares['MILLISECOND']:.2%} | {shares['MICROSECOND']:.2%} |")
        for precision, share in shares.items():
            print(f"RESULT reread_share rate={rate} precision={precision} share={share:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--hot-changes", type=int, default=20_000)
    parser.add_argument("--hot-keys", type=int, default=1_000)
    parser.add_argument("--rates", default="1000,10000,50000")
    args = parser.parse_args(argv)
    os.environ["SYNCER_METRICS"] = "off"  # no EMF lines on stdout between the figures
    header("Kinesis vs DynamoDB Streams through lambda_handler (in-memory sinks)")
    throughput(args.records, args.runs)
    hot_keys(args.hot_changes, args.hot_keys, [int(r) for r in args.rates.split(",")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
