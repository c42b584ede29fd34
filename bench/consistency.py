"""The cost of consistency checks: per batch at sample rates 0.01 and 1.0, and per sampled key.

Part 1, the batch: 1,000-record batches (distinct new items, NEW_AND_OLD_IMAGES) through
``process_batch`` on the local services, taking turns batch by batch between

- ``off``: the pipeline without the list of written keys it now returns (``_written_keys``
  replaced by an empty tuple): what the batch cost before issue 21;
- ``on``: the pipeline as it is, then what each path adds after the batch: ``syncer run``'s
  ``InProcessChecker.observe_batch`` (sample, fingerprint, queue: no I/O), and Lambda's
  ``SqsScheduler.schedule`` (the same sampling plus ``SendMessageBatch`` to moto's SQS).

Part 2, the checks: ``run_checks`` on k sampled keys of a real table (moto) whose items,
documents and cache keys exist, k = 1, 10, 100; the downstream calls each round makes are
counted (DynamoDB through botocore's event hooks, OpenSearch by wrapping ``mget``, Redis by
wrapping the pipeline's ``execute``).

    .venv/bin/python bench/consistency.py [--batches 20] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SEQUENCE_BASE,
    catalog_item,
    insert_records,
    start_bench,
    stream_record,
    teardown_index,
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def measure_batches(config_path: Path, batches: int, size: int) -> None:
    import boto3

    from syncer import pipeline
    from syncer.config import load_config
    from syncer.config.consistency import ConsistencyConfig
    from syncer.consistency.inprocess import InProcessChecker
    from syncer.consistency.queue import SqsScheduler
    from syncer.core.work import KeyWork
    from syncer.sinks.build import build_sinks

    base = load_config(str(config_path))
    table = base.tables[0].name
    sqs = boto3.client("sqs")
    sinks = build_sinks(base)
    original = KeyWork.written_key
    timings: dict[str, list[float]] = {"off": [], "on": []}
    added: dict[tuple[str, float], list[float]] = {}
    sampled: dict[float, list[int]] = {0.01: [], 1.0: []}
    round_trips: list[float] = []
    first = 0
    warm_up = insert_records(table, size, 10_000_000)
    pipeline.process_batch(warm_up, base, sinks)  # connections, caches, first-call imports
    try:
        for batch in range(batches):
            for variant in ("off", "on"):
                records = insert_records(table, size, first)
                first += size
                KeyWork.written_key = original if variant == "on" else (lambda *a: None)  # type: ignore[method-assign]
                started = time.perf_counter()
                outcome = pipeline.process_batch(records, base, sinks)
                timings[variant].append(time.perf_counter() - started)
                if variant == "off":
                    continue
                for rate in (0.01, 1.0):
                    # A fresh queue each time: moto slows down as undelivered messages pile up.
                    name = f"bench-checks-{int(time.time() * 1000)}-{batch}-{int(rate * 100)}"
                    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
                    config = dataclasses.replace(
                        base, consistency=ConsistencyConfig(rate, 300.0, queue_url)
                    )
                    try:
                        checker = InProcessChecker(config, sinks, rng=random.Random(1))
                        started = time.perf_counter()
                        checker.observe_batch(outcome)
                        added.setdefault(("run", rate), []).append(time.perf_counter() - started)
                        sampled[rate].append(checker.pending())
                        checker.close()  # nothing is due for 300 s: those samples are dropped
                        scheduler = SqsScheduler(config, lambda: sqs, random.Random(1))
                        started = time.perf_counter()
                        counts = scheduler.schedule(outcome)
                        elapsed = time.perf_counter() - started
                        added.setdefault(("lambda", rate), []).append(elapsed)
                        assert counts["schedule_failures"] == 0, counts
                        entries = [{"Id": str(n), "MessageBody": "{}"} for n in range(10)]
                        started = time.perf_counter()
                        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                        round_trips.append(time.perf_counter() - started)
                    finally:
                        sqs.delete_queue(QueueUrl=queue_url)
    finally:
        KeyWork.written_key = original  # type: ignore[method-assign]
        sinks.close()
    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    print(
        f"\n# one SendMessageBatch of 10 to a fresh queue of this SQS (moto): "
        f"{_ms(statistics.median(round_trips))} ms median"
    )
    print(f"\n## per batch of {size} records, median of {batches} batches each (ms)")
    print("| | ms | vs the batch before issue 21 |")
    print("|---|---|---|")
    print(f"| process_batch before issue 21 (no written keys) | {_ms(off)} | — |")
    print(
        f"| process_batch now (written keys, freshness) | {_ms(on)} | "
        f"{100 * (on - off) / off:+.1f}% |"
    )
    for rate in (0.01, 1.0):
        keys = statistics.median(sampled[rate])
        for path, label in (
            ("run", "syncer run: observe_batch"),
            ("lambda", "Lambda: schedule to SQS"),
        ):
            extra = statistics.median(added[(path, rate)])
            print(
                f"| + {label}, sample_rate {rate:g} ({keys:g} keys sampled) | {_ms(extra)} | "
                f"{100 * extra / off:+.1f}% |"
            )


class _Counting:
    """Wraps a client attribute to count calls."""

    def __init__(self) -> None:
        self.calls = 0


def measure_checks(config_path: Path) -> None:
    import boto3

    from syncer.config import load_config
    from syncer.consistency.check import run_checks, sample_batch
    from syncer.demo import create_catalog_table
    from syncer.pipeline import process_batch
    from syncer.sinks.build import build_sinks

    base = load_config(str(config_path))
    table = base.tables[0].name
    dynamodb = boto3.client("dynamodb")
    create_catalog_table(dynamodb, table)
    sinks = build_sinks(base)
    try:
        items = [catalog_item(900_000 + n) for n in range(100)]
        for item in items:
            dynamodb.put_item(TableName=table, Item=item)
        records = [
            stream_record(table, item, SEQUENCE_BASE * 2 + n * 100, created_s=int(time.time()))
            for n, item in enumerate(items)
        ]
        outcome = process_batch(records, base, sinks)
        config = dataclasses.replace(
            base, consistency=dataclasses.replace(base.consistency, sample_rate=1.0)
        )
        samples = sample_batch(outcome.written, config, random.Random(1))
        for item in items[:50]:  # half the keys hold a cached value, as a read-mostly cache does
            sinks.redis.set(f"product:{item['pk']['S']}", b"cached")
        dynamo_calls = _Counting()
        dynamodb_client = sinks.items._client  # the reader's own client
        dynamodb_client.meta.events.register(
            "before-call.dynamodb.BatchGetItem",
            lambda **_: setattr(dynamo_calls, "calls", dynamo_calls.calls + 1),
        )
        mget_calls = _Counting()
        real_mget = sinks.opensearch.mget

        def counted_mget(*args: Any, **kwargs: Any) -> Any:
            mget_calls.calls += 1
            return real_mget(*args, **kwargs)

        sinks.opensearch.mget = counted_mget
        print("\n## checks: run_checks on k sampled keys (median of 20 rounds)")
        print(
            "| k | ms per round | ms per key | BatchGetItem | _mget | Redis pipelines | verdicts |"
        )
        print("|---|---|---|---|---|---|---|")
        for k in (1, 10, 100):
            chosen = samples[:k]
            times = []
            dynamo_calls.calls = mget_calls.calls = 0
            pipelines = 0
            results: list[Any] = []
            for _ in range(20):
                started = time.perf_counter()
                results = run_checks(chosen, config, sinks)
                times.append(time.perf_counter() - started)
                pipelines += 1 if any(s.cache_keys for s in chosen) else 0
            kinds = sorted({r.index.value for r in results} | {r.cache.value for r in results})
            per_round = statistics.median(times)
            print(
                f"| {k} | {_ms(per_round)} | {_ms(per_round / k)} | {dynamo_calls.calls / 20:g} | "
                f"{mget_calls.calls / 20:g} | {pipelines / 20:g} | {', '.join(kinds)} |"
            )
        for item in items:
            sinks.redis.unlink(*[f"product:{item['pk']['S']}"])
    finally:
        dynamodb.delete_table(TableName=table)
        sinks.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    suffix = f"{int(time.time() * 1000) % 10**9}"
    table, alias = f"bench_consistency_{suffix}", f"bench-consistency-{suffix}"
    _, config_path = start_bench(
        "consistency checks: cost per batch and per key", "consistency", table, alias
    )
    try:
        measure_batches(config_path, args.batches, args.batch_size)
        measure_checks(config_path)
    finally:
        teardown_index(config_path)


if __name__ == "__main__":
    main()
