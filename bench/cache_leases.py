"""Cache-aside vs ``LeasedCache`` under hot writes: stale keys left once syncer caught up, and latency.

A table with a stream in the shared moto server, its index, and ``syncer run`` following it as a
subprocess (``--idle-sleep-s 0.25``: Lambda polls a shard about four times a second). syncer
invalidates two cache keys per item, ``plain:{pk}`` and ``leased:{pk}``, so both kinds of reader
run side by side against the same writes and the same invalidations:

* a writer updates a few hot items (a ``version`` attribute, +1 per write) at a steady rate;
* reader threads read random hot items through both caches, alternating: plain cache-aside
  (``GET``; on a miss load, then ``SET ... EX 300``) and ``LeasedCache.get_or_fill``. Both load
  the item with a strongly consistent ``GetItem``; a fraction of loads then stall (a GC pause,
  a slow render, a congested network: ``--slow-fraction`` of loads stall up to ``--slow-ms``).

When the writer stops, readers stop, and syncer has applied every write (the index holds each
item's last version), each key whose cached value differs from the table is counted, per kind.
Then, without writer or stalls, the read latency of a hit and of a miss for both kinds (the
loader returns a 1 KB value from memory, so only the cache's own cost is measured).

    .venv/bin/python bench/cache_leases.py [--runs 3] [--seconds 12] [--readers 8] [--items 20]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OPENSEARCH_URL,
    REDIS_URL,
    header,
    percentile,
    setup_index,
    teardown_index,
    use_services_env,
)

KINDS = ("plain", "leased")
TTL_S = 300


def write_config(path: Path, table: str, alias: str) -> Path:
    path.write_text(
        f'[opensearch]\nurl = "{OPENSEARCH_URL}"\n\n[redis]\nurl = "{REDIS_URL}"\n\n'
        f'[deadletter]\nfile = "{path.with_suffix(".deadletter.jsonl")}"\n\n'
        f'[[tables]]\nname = "{table}"\nindex = "{alias}"\n'
        'cache_keys = ["plain:{pk}", "leased:{pk}"]\n'
    )
    return path


def start_syncer(config_path: Path, work: Path, log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("syncer")),
            "run",
            "--config",
            str(config_path),
            "--idle-sleep-s",
            "0.25",
            "--checkpoint-file",
            str(work / f"{config_path.stem}.checkpoints.json"),
            "--metrics-port",
            "0",
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_once(args: argparse.Namespace, run: int, work: Path) -> dict[str, int]:
    """One run: writer, readers and syncer; the stale keys of each kind once syncer caught up."""
    import boto3
    import redis
    from opensearchpy import OpenSearch

    from syncer.client.cachefill import LeasedCache, decode_entry
    from syncer.demo import create_catalog_table

    suffix = f"{int(time.time() * 1000) % 10**9}-{run}"
    table, alias = f"bench_lease_{suffix}", f"bench-lease-{suffix}"
    dynamodb = boto3.client("dynamodb")
    create_catalog_table(dynamodb, table)
    config_path = write_config(work / f"{table}.toml", table, alias)
    setup_index(config_path)
    search = OpenSearch(hosts=[OPENSEARCH_URL], timeout=30)
    cache = redis.Redis.from_url(REDIS_URL)
    pks = [f"hot-{suffix}-{n:03d}" for n in range(args.items)]
    versions = dict.fromkeys(pks, 0)
    for pk in pks:
        dynamodb.put_item(TableName=table, Item=_item(pk, 0))
    worker = start_syncer(config_path, work, work / f"{table}.log")
    stop_writing, stop_reading = threading.Event(), threading.Event()
    counters: list[Any] = []
    rng = random.Random(run)

    def load(pk: str, stall: random.Random) -> bytes:
        got = dynamodb.get_item(
            TableName=table, Key={"pk": {"S": pk}, "sk": {"S": "v"}}, ConsistentRead=True
        )
        value = got["Item"]["version"]["N"].encode()
        if stall.random() < args.slow_fraction:
            time.sleep(stall.random() * args.slow_ms / 1000)
        return value

    def writer() -> None:
        start = time.monotonic()
        number = 0
        while not stop_writing.is_set():
            time.sleep(max(0.0, start + number / args.rate - time.monotonic()))
            pk = rng.choice(pks)
            versions[pk] += 1
            dynamodb.put_item(TableName=table, Item=_item(pk, versions[pk]))
            number += 1

    def reader(seed: int) -> None:
        local = random.Random(seed)
        leased = LeasedCache(cache)
        counters.append(leased)
        while not stop_reading.is_set():
            pk = local.choice(pks)
            key = f"plain:{pk}"
            if cache.get(key) is None:
                cache.set(key, load(pk, local), ex=TTL_S)
            leased.get_or_fill(f"leased:{pk}", lambda pk=pk: load(pk, local), ttl_s=TTL_S)
            time.sleep(args.think_ms / 1000)

    # syncer run starts at TRIM_HORIZON of the new stream: wait until it applied the inserts.
    _wait_until(lambda: _indexed_versions(search, alias, pks) == versions, worker, 60)
    threads = [threading.Thread(target=reader, args=(run * 100 + n,)) for n in range(args.readers)]
    writing = threading.Thread(target=writer)
    for thread in [*threads, writing]:
        thread.start()
    time.sleep(args.seconds)
    stop_writing.set()
    writing.join()
    stop_reading.set()
    for thread in threads:
        thread.join()
    # syncer caught up: the index holds every item's last version; its invalidation follows the
    # bulk in the same batch, so give it a moment more.
    _wait_until(lambda: _indexed_versions(search, alias, pks) == versions, worker, 60)
    time.sleep(1.0)
    stale = dict.fromkeys(KINDS, 0)
    cached = dict.fromkeys(KINDS, 0)
    for pk in pks:
        truth = str(versions[pk]).encode()
        for kind in KINDS:
            raw = cache.get(f"{kind}:{pk}")
            entry = None if raw is None else decode_entry(raw)  # leased keys hold envelopes
            value = None if entry is None else entry.value
            cached[kind] += value is not None
            stale[kind] += value is not None and value != truth
    totals = {
        name: sum(getattr(c.counters(), name) for c in counters)
        for name in ("fills_stored", "fills_refused", "waits", "loads_without_fill")
    }
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=60)
    cache.unlink(*[f"{kind}:{pk}" for pk in pks for kind in KINDS])
    dynamodb.delete_table(TableName=table)
    teardown_index(config_path)
    writes = sum(versions.values())
    print(
        f"{run:>3} {writes:>6} {stale['plain']:>6}/{cached['plain']:<3} "
        f"{stale['leased']:>6}/{cached['leased']:<3} {totals['fills_stored']:>7} "
        f"{totals['fills_refused']:>7} {totals['waits']:>6} {totals['loads_without_fill']:>6}"
    )
    return {"plain": stale["plain"], "leased": stale["leased"], "writes": writes}


def _item(pk: str, version: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v"}, "version": {"N": str(version)}}


def _indexed_versions(search: Any, alias: str, pks: list[str]) -> dict[str, int]:
    docs = search.mget(index=alias, body={"ids": [f"{pk}|v" for pk in pks]})["docs"]
    return {
        pk: int(doc["_source"]["version"]) if doc.get("found") else -1
        for pk, doc in zip(pks, docs, strict=True)
    }


def _wait_until(
    done: Callable[[], bool], worker: subprocess.Popen[bytes], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("syncer run did not catch up (see its log in the work directory)")
        time.sleep(0.1)


def latency(samples: int) -> dict[str, list[float]]:
    """Single-threaded, interleaved: a miss then a hit of a fresh key, for both kinds."""
    import redis

    from syncer.client.cachefill import LeasedCache

    client = redis.Redis.from_url(REDIS_URL)
    leased = LeasedCache(client)
    value = os.urandom(1024)
    prefix = f"bench-lease-latency-{int(time.time())}"
    timings: dict[str, list[float]] = {
        f"{kind} {what}": [] for kind in KINDS for what in ("miss", "hit")
    }

    def plain_read(key: str) -> bytes:
        got = client.get(key)
        if got is None:
            got = value
            client.set(key, got, ex=TTL_S)
        return bytes(got)

    for number in range(samples + 50):  # the first 50 warm connections and scripts up
        for kind in KINDS:
            key = f"{prefix}:{kind}:{number}"
            for what in ("miss", "hit"):
                started = time.perf_counter()
                if kind == "plain":
                    plain_read(key)
                else:
                    leased.get_or_fill(key, lambda: value, ttl_s=TTL_S)
                if number >= 50:
                    timings[f"{kind} {what}"].append(time.perf_counter() - started)
            client.unlink(key)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0, help="writing time per run")
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--items", type=int, default=20, help="hot items")
    parser.add_argument("--rate", type=float, default=40.0, help="writes per second")
    parser.add_argument("--slow-fraction", type=float, default=0.1)
    parser.add_argument("--slow-ms", type=float, default=1000.0)
    parser.add_argument("--think-ms", type=float, default=2.0, help="pause between reads")
    parser.add_argument("--latency-samples", type=int, default=2000)
    args = parser.parse_args()
    use_services_env()
    header("Cache-aside vs LeasedCache: stale keys after syncer caught up, read latency")
    work = Path(tempfile.mkdtemp(prefix="syncer-bench-lease-"))
    print(
        f"{args.readers} readers, {args.items} hot items, {args.rate:g} writes/s for "
        f"{args.seconds:g} s per run; {args.slow_fraction:.0%} of loads stall up to "
        f"{args.slow_ms:g} ms; syncer run --idle-sleep-s 0.25"
    )
    print(
        f"{'run':>3} {'writes':>6} {'stale plain':>10} {'stale leased':>12} {'fills':>7} "
        f"{'refused':>7} {'waits':>6} {'nofill':>6}"
    )
    results = [run_once(args, run, work) for run in range(1, args.runs + 1)]
    plain = [r["plain"] for r in results]
    leased = [r["leased"] for r in results]
    print(f"stale keys per run: plain cache-aside {plain}, LeasedCache {leased}")
    timings = latency(args.latency_samples)
    print(f"{'read':>12} {'p50 us':>7} {'p99 us':>7}  ({args.latency_samples} each)")
    figures = []
    for name, values in timings.items():
        p50, p99 = percentile(values, 0.5) * 1e6, percentile(values, 0.99) * 1e6
        print(f"{name:>12} {p50:>7.0f} {p99:>7.0f}")
        tag = name.replace(" ", "_")
        figures.append(f"{tag}_p50_us={p50:.0f} {tag}_p99_us={p99:.0f}")
    print(
        f"RESULT cache_leases stale_plain={sum(plain)} stale_leased={sum(leased)} "
        f"runs={args.runs} " + " ".join(figures)
    )


if __name__ == "__main__":
    main()
