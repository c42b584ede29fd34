"""Cache invalidation of a 1,000-key batch: one Redis node vs the 3-primary Redis Cluster.

``syncer.sinks.cache.invalidate`` on the real servers of scripts/services.sh: the single node
(one pipeline of one UNLINK) and the cluster (one UNLINK per hash slot, one pipeline per
primary, all primaries written before any is read). Baseline: redis-py's own cluster
pipeline, which takes one UNLINK per key. Before each timed call the keys are written
again, so every UNLINK deletes. The first call of a fresh client (INFO cluster, CLUSTER
SLOTS, connections) is reported apart.

    .venv/bin/python bench/cluster_invalidation.py [--keys 1000] [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncer.config import RedisConfig
from syncer.sinks import cache

SINGLE_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000/0")


def _keys(count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    # the shapes of the default cache_keys templates: product, product + sort key, category
    shapes = ("product:{n}-{run}", "product:{n}-{run}:v1", "category:{n}-{run}")
    return [shapes[n % 3].format(n=n, run=run) for n in range(count)]


def _seed(handle: cache.RedisHandle, keys: list[str]) -> None:
    client = handle.connected()
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, "cached")
    pipe.execute()


def redis_py_cluster_pipeline(handle: cache.RedisHandle, keys: list[str]) -> int:
    """The baseline: RedisCluster.pipeline(), which refuses multi-key UNLINK in a pipeline."""
    pipe = handle.connected().pipeline()
    for key in keys:
        pipe.unlink(key)
    return sum(int(removed) for removed in pipe.execute())


def measure(
    label: str, url: str, keys: list[str], repeats: int, invalidate: Any = cache.invalidate
) -> tuple[float, list[float]]:
    """(first call ms, timed calls ms) of invalidating ``keys`` through a fresh client."""
    handle = cache.make_client(RedisConfig(url=url))
    try:
        started = time.perf_counter()
        invalidate(handle, keys)  # connects, detects the kind, reads the slot map
        first_ms = (time.perf_counter() - started) * 1000
        timings = []
        for _ in range(repeats):
            _seed(handle, keys)
            started = time.perf_counter()
            removed = invalidate(handle, keys)
            timings.append((time.perf_counter() - started) * 1000)
            if removed != len(keys):
                raise SystemExit(f"{label}: {removed} of {len(keys)} keys removed")
    finally:
        handle.close()
    return first_ms, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    keys = _keys(args.keys)
    print(f"# invalidate() of {args.keys} keys, {args.repeats} timed calls each")
    print(f"{'target':<34} {'first call':>10} {'p50':>8} {'p95':>8} {'mean':>8}  (ms)")
    rows = [
        ("single node (syncer)", SINGLE_URL, cache.invalidate),
        ("cluster, 3 primaries (syncer)", CLUSTER_URL, cache.invalidate),
        ("cluster, redis-py ClusterPipeline", CLUSTER_URL, redis_py_cluster_pipeline),
    ]
    results = {}
    for label, url, invalidate in rows:
        first_ms, timings = measure(label, url, keys, args.repeats, invalidate)
        p50 = statistics.median(timings)
        p95 = statistics.quantiles(timings, n=20)[-1]
        results[label] = p50
        print(
            f"{label:<34} {first_ms:>10.1f} {p50:>8.2f} {p95:>8.2f} "
            f"{statistics.fmean(timings):>8.2f}"
        )
    single, parallel = results[rows[0][0]], results[rows[1][0]]
    print(
        f"RESULT cluster_invalidation keys={args.keys} single_p50_ms={single:.2f} "
        f"cluster_p50_ms={parallel:.2f} ratio={parallel / single:.1f}"
    )


if __name__ == "__main__":
    main()
