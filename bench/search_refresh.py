"""Search-derived cache keys: ``refresh=wait_for`` or ``true`` on the bulk vs a second invalidation.

A cache filled from a search query (``listing:{category}``) must be invalidated only once the
batch's writes are searchable. Three ways, each on its own index, batches interleaved
round-robin so machine noise hits them alike, all through ``process_batch`` (what the handler
runs) on the real OpenSearch and Redis:

* ``none``: today's path, the listing key is an ordinary cache key (invalidated after the bulk,
  before the next refresh: a refill can cache the old result);
* ``wait_for``: the listing is in ``search_cache_keys`` and the batch's ``_bulk`` is sent with
  ``refresh=wait_for`` (answers at the next scheduled refresh), then every key is invalidated;
* ``true``: the same with ``refresh=true`` (the bulk refreshes the shards it wrote before it
  answers): what syncer does for tables with ``search_cache_keys``;
* ``refresh``: today's path, then an explicit ``POST <index>/_refresh`` and a second ``UNLINK``
  of the listing keys (item keys keep their timing; every batch forces a refresh).

Per batch: wall time until the listing keys are invalidated for good, and whether a search
right after that sees every write of the batch. At the end: refreshes and segments per index.

    .venv/bin/python bench/search_refresh.py [--batches 40] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OPENSEARCH_URL,
    REDIS_URL,
    SEQUENCE_BASE,
    catalog_item,
    percentile,
    setup_index,
    start_bench,
    stream_record,
    teardown_index,
)
from syncer.core.plan import bulk_refresh

TABLE = "bench_srefresh"
MODES = ("none", "wait_for", "true", "refresh")
LISTING = "listing:{category}"


def write_mode_config(path: Path, mode: str) -> Path:
    """A config for one mode: its own alias, the listing as a search or an ordinary cache key."""
    keys = '["product:{pk}", "product:{pk}:{sk}"'
    if mode in ("wait_for", "true"):
        keys += f']\nsearch_cache_keys = ["{LISTING}"]'
    else:
        keys += f', "{LISTING}"]'
    path.write_text(
        f'[opensearch]\nurl = "{OPENSEARCH_URL}"\n\n[redis]\nurl = "{REDIS_URL}"\n\n'
        f'[deadletter]\nfile = "{path.with_suffix(".deadletter.jsonl")}"\n\n'
        f'[[tables]]\nname = "{TABLE}"\nindex = "{alias(mode)}"\ncache_keys = {keys}\n'
        'exclude_attributes = ["cost"]\n'
    )
    return path


def alias(mode: str) -> str:
    return f"bench-srefresh-{mode.replace('_', '')}"


def batch_records(batch: int, size: int, first_item: int) -> list[dict[str, Any]]:
    """``size`` changes of distinct items, each stamped with the batch number."""
    records = []
    for offset in range(size):
        number = first_item + batch * size + offset
        item = catalog_item(number)
        item["batch"] = {"N": str(batch)}
        records.append(stream_record(TABLE, item, SEQUENCE_BASE + number * 100))
    return records


def run_batch(
    mode: str, records: list[dict[str, Any]], config: Any, sinks: Any
) -> tuple[Any, float]:
    """One batch the way ``mode`` does it: its outcome, and when the item keys were invalidated."""
    from syncer import pipeline
    from syncer.sinks.cache import invalidate

    started = time.perf_counter()
    if mode in ("wait_for", "true"):  # both ways through syncer's one keyword
        pipeline.bulk_refresh = lambda tables: mode  # type: ignore[assignment]
    try:
        outcome = pipeline.process_batch(records, config, sinks)
    finally:
        pipeline.bulk_refresh = bulk_refresh
    items_invalidated_s = time.perf_counter() - started
    if mode == "refresh":
        sinks.opensearch.indices.refresh(index=config.tables[0].index)
        listing = [k for k in outcome.cache_keys if k.startswith("listing:")]
        invalidate(sinks.redis, listing)
    return outcome, items_invalidated_s


def visible(client: Any, index: str, batch: int, expected: int) -> bool:
    """Whether a search right now finds every document the batch wrote."""
    response = client.count(index=index, body={"query": {"term": {"batch": batch}}})
    return int(response["count"]) == expected


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per mode")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    work, _ = start_bench(
        "Search-derived cache keys: wait_for vs true vs refresh + second invalidation",
        "srefresh",
        TABLE,
        alias("none"),
    )
    from syncer.config import load_config
    from syncer.sinks.build import build_sinks

    configs, sinks = {}, {}
    for mode in MODES:
        path = write_mode_config(work / f"{mode}.toml", mode)
        setup_index(path)
        configs[mode] = load_config(str(path))
        sinks[mode] = build_sinks(configs[mode])
    client = sinks["none"].opensearch
    first_item = int(time.time()) % 100_000 * 1_000_000
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    first_unlink: dict[str, list[float]] = {mode: [] for mode in MODES}
    seen: dict[str, int] = dict.fromkeys(MODES, 0)
    stats_before = {mode: client.indices.stats(index=alias(mode)) for mode in MODES}
    print(
        f"{args.batches} batches x {args.batch_size} changes per mode, round-robin; "
        "index refresh_interval 1 s (the template's)"
    )
    for batch in range(args.batches):
        for mode in MODES:
            records = batch_records(batch, args.batch_size, first_item)
            started = time.perf_counter()
            outcome, items_s = run_batch(mode, records, configs[mode], sinks[mode])
            wall[mode].append(time.perf_counter() - started)
            first_unlink[mode].append(items_s)
            assert not outcome.failed_sequence_numbers, outcome
            seen[mode] += visible(client, alias(mode), batch, args.batch_size)
    print(
        f"{'mode':>9} {'listing gone p50':>16} {'p99 ms':>7} {'item keys p50':>14} "
        f"{'visible':>8} {'refreshes':>9} {'segments':>8}"
    )
    results = []
    for mode in MODES:
        stats = client.indices.stats(index=alias(mode))["_all"]["primaries"]
        before = stats_before[mode]["_all"]["primaries"]
        refreshes = stats["refresh"]["total"] - before["refresh"]["total"]
        segments = stats["segments"]["count"]
        p50, p99 = percentile(wall[mode], 0.5) * 1000, percentile(wall[mode], 0.99) * 1000
        items_p50 = percentile(first_unlink[mode], 0.5) * 1000
        print(
            f"{mode:>9} {p50:>16.0f} {p99:>7.0f} {items_p50:>14.0f} "
            f"{seen[mode]:>4}/{args.batches:<3} {refreshes:>9} {segments:>8}"
        )
        results.append(
            f"{mode}_p50_ms={p50:.0f} {mode}_p99_ms={p99:.0f} {mode}_visible={seen[mode]}"
            f"/{args.batches} {mode}_refreshes={refreshes}"
        )
    # Back to back, as a busy shard's batches come: how often each mode makes the index refresh.
    print("back to back (no interleaving), the same number of batches:")
    print(f"{'mode':>9} {'batches/s':>9} {'refreshes/s':>11} {'refreshes/batch':>15}")
    for mode in MODES:
        before = client.indices.stats(index=alias(mode))["_all"]["primaries"]["refresh"]["total"]
        started = time.perf_counter()
        for batch in range(args.batches, 2 * args.batches):
            records = batch_records(batch, args.batch_size, first_item)
            run_batch(mode, records, configs[mode], sinks[mode])
        elapsed = time.perf_counter() - started
        after = client.indices.stats(index=alias(mode))["_all"]["primaries"]["refresh"]["total"]
        refreshes = after - before
        print(
            f"{mode:>9} {args.batches / elapsed:>9.1f} {refreshes / elapsed:>11.1f} "
            f"{refreshes / args.batches:>15.2f}"
        )
        results.append(f"{mode}_b2b_batches_per_s={args.batches / elapsed:.1f}")
    print("RESULT search_refresh " + " ".join(results))
    for mode in MODES:
        teardown_index(work / f"{mode}.toml")


if __name__ == "__main__":
    main()
