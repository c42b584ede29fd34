"""Hot keys: Zipf-distributed writes; OpenSearch gets one write per distinct key per batch.

Batches of MODIFY records whose item keys follow a Zipf law (a few items change very often, as
stock counters and prices do) go through ``lambda_handler`` on the real services. The bench
counts records in, distinct keys per batch and the actions actually sent in ``_bulk`` requests
(read from the bulk responses), then checks that every key's document holds the newest change.
A peer handler without coalescing (AWS samples, ``helpers.bulk``) sends one action per record.

    .venv/bin/python bench/hot_keys.py [--batches 5] [--batch-size 1000] [--keys 2000] [--s 1.1]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SEQUENCE_BASE,
    catalog_item,
    start_bench,
    stream_record,
    teardown_index,
)
from bench.end_to_end import OpenSearchTimer

TABLE = "bench_hot"
ALIAS = "bench-hot"


class Zipf:
    """Draws ranks 1..n with probability proportional to 1 / rank**s."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self.cumulative = list(itertools.accumulate(1 / rank**s for rank in range(1, n + 1)))
        self.rng = rng

    def draw(self) -> int:
        point = self.rng.random() * self.cumulative[-1]
        return bisect.bisect_left(self.cumulative, point)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=2000, help="size of the key space")
    parser.add_argument("--s", type=float, default=1.1, help="Zipf exponent")
    args = parser.parse_args()
    _, config_path = start_bench(
        "Hot keys: Zipf writes through lambda_handler", "hot", TABLE, ALIAS
    )
    os.environ["SYNCER_CONFIG"] = str(config_path)
    os.environ["SYNCER_METRICS"] = "off"
    from syncer import handler

    handler.reset_container()
    container = handler._get_container()
    timer = OpenSearchTimer()
    timer.install(container.sinks.opensearch)

    rng = random.Random(42)
    zipf = Zipf(args.keys, args.s, rng)
    first_item = int(time.time()) % 100_000 * 1_000_000  # fresh items every run
    sequence = itertools.count(SEQUENCE_BASE, 37)  # gapped, increasing, 21 digits
    newest: dict[int, int] = {}  # item number -> newest sequence number sent
    totals = {"records": 0, "distinct": 0, "writes": 0, "wall": 0.0}
    print(
        f"{args.batches} batches x {args.batch_size} MODIFY records over {args.keys} keys, "
        f"Zipf s={args.s}"
    )
    print(
        f"{'batch':>5} {'records in':>10} {'distinct keys':>13} {'writes out':>10} "
        f"{'top key share':>13} {'records/s':>9}"
    )
    for batch_number in range(1, args.batches + 1):
        records: list[dict[str, Any]] = []
        counts: dict[int, int] = {}
        for _ in range(args.batch_size):
            number = first_item + zipf.draw()
            item = catalog_item(number)
            item["stock"] = {"N": str(rng.randint(0, 500))}  # what changes: the stock count
            seq = next(sequence)
            records.append(stream_record(TABLE, item, seq, "MODIFY"))
            newest[number] = seq
            counts[number] = counts.get(number, 0) + 1
        timer.reset()
        started = time.perf_counter()
        response = handler.lambda_handler({"Records": records}, None)
        elapsed = time.perf_counter() - started
        assert response == {"batchItemFailures": []}, response
        totals["records"] += len(records)
        totals["distinct"] += len(counts)
        totals["writes"] += timer.actions
        totals["wall"] += elapsed
        print(
            f"{batch_number:>5} {len(records):>10} {len(counts):>13} {timer.actions:>10} "
            f"{max(counts.values()) / len(records):>13.1%} {len(records) / elapsed:>9,.0f}"
        )

    # Every key's document must hold its newest change.
    client = container.sinks.opensearch
    ids = [f"prod-{number:09d}|variant-{number % 7}" for number in newest]
    wrong = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        docs = client.mget(index=ALIAS, body={"ids": chunk}, params={"_source_includes": "_syncer"})
        for doc_id, doc in zip(chunk, docs["docs"], strict=True):
            number = int(doc_id.split("|")[0].removeprefix("prod-"))
            seq = int(doc["_source"]["_syncer"]["seq"]) if doc.get("found") else None
            wrong += seq != newest[number]
    print(
        f"total: {totals['records']} records in, {totals['distinct']} distinct keys per batch "
        f"summed, {totals['writes']} writes out ({totals['records'] / totals['writes']:.1f} "
        f"records per write); a handler without coalescing sends {totals['records']} writes"
    )
    print(f"documents checked: {len(ids)}, not at their newest change: {wrong}")
    print(
        f"RESULT hot_keys records_in={totals['records']} distinct_keys={totals['distinct']} "
        f"writes_out={totals['writes']} stale_documents={wrong} "
        f"rps={totals['records'] / totals['wall']:.0f}"
    )
    teardown_index(config_path)
    if totals["writes"] != totals["distinct"] or wrong:
        sys.exit("writes out differ from the distinct keys, or a document is not the newest")


if __name__ == "__main__":
    main()
