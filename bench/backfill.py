"""Loading a DynamoDB export: ``reindex --export`` with 1 and 2 workers, the scan, a bare loader.

After an un-timed warm-up load, one run compares, on the same items (``bench.common.catalog_item``, about 1 KB each):

OpenSearch's own share of each run is its indexing time (``_stats/indexing``
``index_time_in_millis`` of the index, summed over its threads) over the run's wall time: what
stops two workers from doubling one on a machine whose cores OpenSearch shares.

1. ``syncer reindex --export`` with one worker, from an export of ``--files`` data files;
2. the same export loaded with two workers (a process pool);
3. the same items in half as many, twice as large files, one worker, over the index of run 1:
   peak memory must not follow the file size, and ``finish`` walks an old index holding every
   item (its time is printed on its own);
4. a bare ``opensearchpy.helpers.bulk`` loader of the same files: no versions, no conditions,
   the same parse and decode (syncer's ``decode_item``), the same bulk size;
5. the scan reindex (``syncer reindex``, 4 segments x 500) of ``--scan-items`` of them in one
   process, from moto's DynamoDB.

Each runs in a fresh interpreter whose peak RSS (``VmHWM``) is read at the end; with two
workers, the pool processes' peaks too. Exports are written in AWS's layout
(tests/exportfiles.py) into moto's S3; every run loads into a new index behind its own alias.

    .venv/bin/python bench/backfill.py [--items 40000] [--files 8] [--scan-items 3000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    catalog_item,
    chunks,
    setup_index,
    start_bench,
    teardown_index,
    write_config,
)

CHILD = r"""
import json, sys, time, resource
from pathlib import Path

mode, config_path, table, uri, workers, progress = sys.argv[1:7]
from syncer.config import load_config
from syncer.sinks.build import build_sinks

config = load_config(config_path)
sinks = build_sinks(config)
started = time.perf_counter()
extra = {}
if mode == "export":
    from syncer.commands.exports import reindex_from_export

    result = reindex_from_export(
        config, sinks, table, uri, workers=int(workers)
    )
    items = result.counts.items
    extra["written"] = result.counts.written
    extra["finish_s"] = result.finish_seconds
    extra["carried"] = result.carried
elif mode == "scan":
    from syncer.commands.reindex import ReindexOptions, reindex_table

    result = reindex_table(config, sinks, table, options=ReindexOptions())
    items = result.indexed
else:  # bare: helpers.bulk over the same files, no versions
    import gzip
    from opensearchpy import helpers
    from syncer.commands.exports import read_export, s3_client
    from syncer.core import jsoncodec
    from syncer.core.attributes import decode_item
    from syncer.core.records import document_id

    s3 = s3_client()
    _, summary, files = read_export(s3, uri)
    alias = config.tables[0].index

    def actions():
        for data_file in files:
            body = s3.get_object(Bucket=summary.bucket, Key=data_file.key)["Body"]
            with gzip.GzipFile(fileobj=body) as lines:
                for line in lines:
                    item = decode_item(jsoncodec.loads(line)["Item"])
                    doc_id = document_id({"pk": item["pk"], "sk": item["sk"]})
                    yield {"_index": alias, "_id": doc_id, "_source": item}

    items, errors = helpers.bulk(
        sinks.opensearch, actions(), chunk_size=1000, max_chunk_bytes=config.opensearch.bulk_max_bytes
    )
seconds = time.perf_counter() - started
stats = sinks.opensearch.indices.stats(index=config.tables[0].index, metric="indexing")
extra["index_ms"] = stats["_all"]["primaries"]["indexing"]["index_time_in_millis"]
hwm_kb = next(
    int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")
)
children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"items": items, "seconds": seconds, "peak_mb": hwm_kb / 1024,
                  "children_peak_mb": children_kb / 1024, **extra}))
"""


def _export(
    s3: Any,
    bucket: str,
    table: str,
    items: list[dict[str, Any]],
    files: int,
    later_s: float = 0.0,
) -> str:
    from tests.exportfiles import full_line, split, write_export

    lines = [full_line(item) for item in items]
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=later_s)
    return write_export(
        s3, bucket, split(lines, files), prefix=f"bench-{files}", export_time=when, table=table
    ).uri


def _load_table(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for chunk in chunks(items, 25):
        request = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        while request:
            response = dynamodb.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}


def _run(mode: str, config: Path, table: str, uri: str, workers: int, work: Path) -> dict[str, Any]:
    progress = work / f"progress-{uuid.uuid4().hex[:6]}.json"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(config), table, uri, str(workers), str(progress)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--scan-items", type=int, default=3_000)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    table = f"bench_export_{suffix}"
    work, base_config = start_bench(
        "Export loading: reindex --export (1 and 2 workers), scan reindex, bare helpers.bulk",
        "backfill",
        table,
        f"bench-export-{suffix}",
    )
    from syncer.demo import create_catalog_table
    from syncer.sinks.build import aws_client

    s3, dynamodb = aws_client("s3"), aws_client("dynamodb")
    bucket = f"bench-exports-{suffix}"
    s3.create_bucket(Bucket=bucket)
    create_catalog_table(dynamodb, table, None)  # the export path reads only its key schema
    items = [catalog_item(n) for n in range(args.items)]
    uri = _export(s3, bucket, table, items, args.files)
    uri_warm = _export(s3, bucket, table, items[: args.items // 8], 1)
    # A later export (as a second onboarding would take): run 1's documents are older than it.
    uri_big = _export(s3, bucket, table, items, max(1, args.files // 2), later_s=600)
    scan_table = f"bench_scan_{suffix}"
    create_catalog_table(dynamodb, scan_table, None)
    _load_table(dynamodb, scan_table, items[: args.scan_items])
    configs = []
    try:
        rows: dict[str, tuple[dict[str, Any], float]] = {}
        half = max(1, args.files // 2)
        plan = [
            # Un-timed: the first run in a fresh process tree pays OpenSearch's and moto's warm-up.
            ("warm-up (not compared)", "export", table, uri_warm, 1),
            ("export, 1 worker", "export", table, uri, 1),
            ("bare helpers.bulk", "bulk", table, uri, 1),
            ("export, 2 workers", "export", table, uri, 2),
            (f"export, 1 worker, {half} files, over run 1", "export", table, uri_big, 1),
            ("scan reindex, 1 process", "scan", scan_table, "", 1),
        ]
        for label, mode, run_table, run_uri, workers in plan:
            if "over run 1" in label:  # the old index now holds every item: finish walks it
                config = configs[1]
            else:
                alias = f"bench-export-{suffix}-{len(configs)}"
                config = write_config(work / f"run{len(configs)}.toml", run_table, alias)
                configs.append(config)
                setup_index(config)
            result = _run(mode, config, run_table, run_uri, workers, work)
            rate = result["items"] / result["seconds"]
            rows[label] = (result, rate)
            print(
                f"{label:40s} {result['items']:>7,d} items {result['seconds']:7.2f} s "
                f"{rate:9,.0f} items/s  peak RSS {result['peak_mb']:6.1f} MB  "
                f"OpenSearch indexing {result['index_ms'] / 1000 / result['seconds']:4.0%} of wall"
                + (
                    f" (pool processes {result['children_peak_mb']:.1f} MB each at most)"
                    if workers > 1
                    else ""
                )
                + (
                    f"; finish {result['finish_s']:.2f} s ({result['carried']:,} carried)"
                    if mode == "export"
                    else ""
                ),
                flush=True,
            )
        one, bare = rows["export, 1 worker"][1], rows["bare helpers.bulk"][1]
        two, scan = rows["export, 2 workers"][1], rows["scan reindex, 1 process"][1]
        print(f"# one export worker / scan reindex process: {one / scan:.2f}x (target >= 3x)")
        print(f"# bare helpers.bulk / one export worker: {bare / one:.2f}x (target <= 1.5x)")
        print(f"# two workers / one worker: {two / one:.2f}x (target >= 1.6x)")
        small = rows["export, 1 worker"][0]["peak_mb"]
        big = rows[f"export, 1 worker, {half} files, over run 1"][0]["peak_mb"]
        print(f"# peak RSS with files twice as large: {big:.1f} MB vs {small:.1f} MB")
    finally:
        for config in configs:
            teardown_index(config)
        teardown_index(base_config)
        for name in (table, scan_table):
            dynamodb.delete_table(TableName=name)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=entry["Key"])
        s3.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
