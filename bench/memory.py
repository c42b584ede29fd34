"""Peak memory (RSS): one big Lambda batch, and ``syncer reindex`` at several table sizes.

1. A fresh interpreter imports the handler, parses a 1,000- or 10,000-record event from JSON
   text (as the Lambda runtime does), then runs ``lambda_handler`` on the real services; peak
   RSS (``VmHWM`` of the process) is read before and after the batch.
2. ``syncer reindex --table T --config F`` runs as a subprocess against tables of several
   sizes, loaded with ``BatchWriteItem`` into a private moto server started for this bench
   (the shared one on port 5000 is left alone); its peak RSS comes from ``/usr/bin/time``.
   The reindex keeps ``segments x page size`` items in flight, so the peak should not grow
   with the table.

moto is slow at both ends (about 450 items/s to load and about 5 ms per item to scan on the
reference machine, see RESULTS.md), so the default sizes keep this under three minutes;
``--sizes 200000`` runs the full-size case when there is time.

    .venv/bin/python bench/memory.py [--sizes 2000,5000,10000] [--batch-sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    SERVICES_ENV,
    catalog_item,
    header,
    insert_records,
    setup_index,
    teardown_index,
    use_services_env,
    write_config,
)

BATCH_TABLE = "bench_mem"
BATCH_ALIAS = "bench-mem"

BATCH_CHILD = r"""
import json, sys, time
def status_kb(field):
    # VmHWM/VmRSS of this process's own address space. Not ru_maxrss: on Linux that also
    # counts the parent's memory the child had before exec (fork/vfork then exec).
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
import syncer.handler as handler
text = open(sys.argv[1], "rb").read()
event = json.loads(text)
del text
before = status_kb("VmHWM")
started = time.perf_counter()
assert handler.lambda_handler(event, None) == {"batchItemFailures": []}
elapsed = time.perf_counter() - started
print(json.dumps({"before_kb": before, "after_kb": status_kb("VmHWM"), "seconds": elapsed}))
"""


def run_peak_rss(command: list[str], env: dict[str, str], cwd: Path) -> tuple[str, float]:
    """Run ``command``; its stdout and peak RSS in MB, from GNU time (``%M``).

    A wrapper that execs the command: its own tiny image is all that the kernel folds into the
    command's maximum RSS, where a Python parent's whole heap would be (``ru_maxrss`` counts the
    pre-exec image of a forked child).
    """
    marker = "peak-rss-kb:"
    done = subprocess.run(
        ["/usr/bin/time", "-f", f"{marker}%M", *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    if done.returncode or not lines or not lines[-1].startswith(marker):
        raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, int(lines[-1].removeprefix(marker)) / 1024


def batch_memory(sizes: list[int], work: Path) -> list[str]:
    config_path = write_config(work / "batch.toml", BATCH_TABLE, BATCH_ALIAS)
    setup_index(config_path)
    env = {**os.environ, "SYNCER_CONFIG": str(config_path), "SYNCER_METRICS": "off"}
    first = int(time.time()) % 100_000 * 1_000_000
    lines = []
    print(f"{'batch':>6} {'event JSON':>10} {'RSS before':>10} {'peak RSS':>9} {'batch s':>8}")
    for size in sizes:
        event_file = work / f"event-{size}.json"
        event_file.write_text(json.dumps({"Records": insert_records(BATCH_TABLE, size, first)}))
        first += size
        done = subprocess.run(
            [sys.executable, "-c", BATCH_CHILD, str(event_file)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{size:>6} {event_file.stat().st_size / 2**20:>8.1f}MB "
            f"{figures['before_kb'] / 1024:>8.0f}MB {figures['after_kb'] / 1024:>7.0f}MB "
            f"{figures['seconds']:>8.2f}"
        )
        lines.append(f"batch{size}_peak_mb={figures['after_kb'] / 1024:.0f}")
    teardown_index(config_path)
    return lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = (work / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("private moto server did not start")


def load_table(dynamodb: object, table: str, count: int) -> float:
    """Create ``table`` and write ``count`` catalog items with BatchWriteItem; seconds taken."""
    from syncer.demo import create_catalog_table

    create_catalog_table(dynamodb, table, view_type=None)
    started = time.perf_counter()
    for start in range(0, count, 25):
        requests = [
            {"PutRequest": {"Item": catalog_item(n)}} for n in range(start, min(start + 25, count))
        ]
        pending = {table: requests}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get(  # type: ignore[attr-defined]
                "UnprocessedItems"
            )
    return time.perf_counter() - started


def reindex_memory(sizes: list[int], work: Path) -> list[str]:
    import boto3
    from botocore.config import Config as BotoConfig

    moto, url = start_moto(work)
    lines = []
    try:
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name=SERVICES_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=BotoConfig(retries={"total_max_attempts": 1}),
        )
        print(
            f"{'items':>7} {'load s':>7} {'items/s':>8} {'reindex s':>9} {'indexed':>8} "
            f"{'peak RSS':>9}  (syncer reindex, 4 segments x 500 items per page)"
        )
        for size in sizes:
            table = f"bench_reindex_{size}"
            index = f"bench-reindex-{size}"
            load_s = load_table(dynamodb, table, size)
            config_path = write_config(work / f"reindex-{size}.toml", table, index)
            setup_index(config_path)
            env = {**os.environ, "AWS_ENDPOINT_URL": url}
            command = [
                str(Path(sys.executable).with_name("syncer")),
                "reindex",
                "--table",
                table,
                "--config",
                str(config_path),
            ]
            started = time.perf_counter()
            out, peak_mb = run_peak_rss(command, env, work)
            elapsed = time.perf_counter() - started
            indexed = out.split(" documents")[0].split()[-1] if " documents" in out else "?"
            print(
                f"{size:>7} {load_s:>7.1f} {size / load_s:>8.0f} {elapsed:>9.1f} {indexed:>8} "
                f"{peak_mb:>7.0f}MB"
            )
            lines.append(f"reindex{size}_peak_mb={peak_mb:.0f}")
            dynamodb.delete_table(TableName=table)
            teardown_index(config_path)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=30)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="2000,5000,10000", help="table sizes for reindex")
    parser.add_argument("--batch-sizes", default="1000,10000")
    args = parser.parse_args()
    use_services_env()
    header("Memory: peak RSS of a big batch and of syncer reindex")
    work = Path(tempfile.mkdtemp(prefix="syncer-bench-mem-"))
    lines = batch_memory([int(s) for s in args.batch_sizes.split(",") if s], work)
    print("target: < 250 MB, independent of the table size")
    lines += reindex_memory([int(s) for s in args.sizes.split(",") if s], work)
    print("RESULT memory " + " ".join(lines))


if __name__ == "__main__":
    main()
