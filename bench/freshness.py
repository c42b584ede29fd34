"""Freshness with ``syncer run``: PutItem -> searchable, and PutItem -> cache key invalidated.

A new table with a stream in the shared moto server, its index, and ``syncer run`` following
it as a subprocess. A writer puts 1,000 new items at a steady rate (20/s), each after setting
its cache key ``product:{pk}`` in Redis. An observer polls every few milliseconds and notes,
per item, when a realtime ``GET`` finds the document, when a search through the alias finds it
(after the index refresh, 1 s by default), and when the cache key is gone. Times run from just
before the PutItem call. p50 and p99 per measure, for ``syncer run`` with its default idle
sleep (1 s after an empty read) and with ``--idle-sleep-s 0.25`` (Lambda polls a shard about
four times a second).

    .venv/bin/python bench/freshness.py [--writes 1000] [--rate 20] [--idle-sleep 1.0,0.25]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OPENSEARCH_URL,
    REDIS_URL,
    catalog_item,
    header,
    percentile,
    setup_index,
    teardown_index,
    use_services_env,
    write_config,
)

POLL_S = 0.005


def measure(idle_sleep_s: float, writes: int, rate: float, work: Path) -> dict[str, list[float]]:
    import boto3
    import redis
    from opensearchpy import OpenSearch

    from syncer.demo import create_catalog_table

    suffix = f"{int(time.time() * 1000) % 10**9}"
    table, alias = f"bench_fresh_{suffix}", f"bench-fresh-{suffix}"
    dynamodb = boto3.client("dynamodb")
    create_catalog_table(dynamodb, table)
    config_path = write_config(work / f"{table}.toml", table, alias)
    setup_index(config_path)
    search = OpenSearch(hosts=[OPENSEARCH_URL], timeout=30)
    cache = redis.Redis.from_url(REDIS_URL)
    log = (work / f"{table}.log").open("wb")
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("syncer")),
            "run",
            "--config",
            str(config_path),
            "--idle-sleep-s",
            str(idle_sleep_s),
            "--checkpoint-file",
            str(work / f"{table}.checkpoints.json"),
            "--metrics-port",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    put_at: dict[str, float] = {}
    got: dict[str, float] = {}
    found: dict[str, float] = {}
    gone: dict[str, float] = {}
    lock = threading.Lock()
    done_writing = threading.Event()

    def item_of(number: int) -> dict[str, Any]:
        item = catalog_item(number)
        item["pk"] = {"S": f"{suffix}-{number:06d}"}
        return item

    def doc_id(item: dict[str, Any]) -> str:
        return f"{item['pk']['S']}|{item['sk']['S']}"

    # Wait until the worker applies a first write (it starts at TRIM_HORIZON of a new stream).
    warm = item_of(999_999)
    dynamodb.put_item(TableName=table, Item=warm)
    deadline = time.monotonic() + 60
    while not search.exists(index=alias, id=doc_id(warm)):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"syncer run did not start: see {log.name}")
        time.sleep(0.05)

    def writer() -> None:
        start = time.monotonic()
        for number in range(writes):
            time.sleep(max(0.0, start + number / rate - time.monotonic()))
            item = item_of(number)
            key = doc_id(item)
            cache.set(f"product:{item['pk']['S']}", "cached")
            with lock:
                put_at[key] = time.monotonic()
            dynamodb.put_item(TableName=table, Item=item)
        done_writing.set()

    def observe() -> None:
        deadline: float | None = None
        while True:
            with lock:
                pending_get = [k for k in put_at if k not in got]
                pending_search = [k for k in got if k not in found]
                pending_cache = [k for k in put_at if k not in gone]
            if pending_get:
                docs = search.mget(
                    index=alias, body={"ids": pending_get}, params={"_source": "false"}
                )
                now = time.monotonic()
                for key, doc in zip(pending_get, docs["docs"], strict=True):
                    if doc.get("found"):
                        got[key] = now
            if pending_search:
                hits = search.search(
                    index=alias,
                    body={"query": {"ids": {"values": pending_search}}, "_source": False},
                    params={"size": len(pending_search)},
                )["hits"]["hits"]
                now = time.monotonic()
                for hit in hits:
                    found[hit["_id"]] = now
            if pending_cache:
                pipe = cache.pipeline(transaction=False)
                for key in pending_cache:
                    pipe.exists(f"product:{key.split('|')[0]}")
                now = time.monotonic()
                for key, exists in zip(pending_cache, pipe.execute(), strict=True):
                    if not exists:
                        gone[key] = now
            if done_writing.is_set():
                deadline = deadline or time.monotonic() + 30
                if len(found) == len(gone) == writes or time.monotonic() > deadline:
                    return
            time.sleep(POLL_S)

    threads = [threading.Thread(target=writer), threading.Thread(target=observe)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)
    dynamodb.delete_table(TableName=table)
    teardown_index(config_path)
    return {
        "GET finds it": [got[k] - put_at[k] for k in got],
        "search finds it": [found[k] - put_at[k] for k in found],
        "cache key gone": [gone[k] - put_at[k] for k in gone],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second")
    parser.add_argument("--idle-sleep", default="1.0,0.25", help="syncer run --idle-sleep-s values")
    args = parser.parse_args()
    use_services_env()
    header("Freshness: syncer run, PutItem -> searchable / cache invalidated")
    work = Path(tempfile.mkdtemp(prefix="syncer-bench-fresh-"))
    print(
        f"{args.writes} PutItem at {args.rate:g}/s per setting; observer polls every "
        f"{POLL_S * 1000:.0f} ms plus its request time; index refresh_interval 1 s"
    )
    print(
        f"{'idle sleep':>10} {'measure':>16} {'seen':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    results = []
    for idle in [float(value) for value in args.idle_sleep.split(",")]:
        figures = measure(idle, args.writes, args.rate, work)
        for name, values in figures.items():
            values_ms = [v * 1000 for v in values]
            p50, p99 = percentile(values_ms, 0.50), percentile(values_ms, 0.99)
            print(
                f"{idle:>9g}s {name:>16} {len(values):>5} {p50:>7.0f} {p99:>7.0f} "
                f"{max(values_ms):>7.0f}"
            )
            tag = name.split()[0].lower()
            results.append(
                f"idle{idle:g}_{tag}_p50_ms={p50:.0f} idle{idle:g}_{tag}_p99_ms={p99:.0f}"
            )
    print("RESULT freshness " + " ".join(results))


if __name__ == "__main__":
    main()
