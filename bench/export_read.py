"""Reading one export data file: checked whole before its first line (now) vs checked at the end.

Since issue 24 a data file is spooled while its MD5 is computed (in memory up to
``SPOOL_IN_MEMORY_BYTES``, else a temporary file), its MD5 and line count are checked, and only
then are its lines decompressed again and handed out (``syncer.sinks.exports``). This measures
what that costs against ``--before`` (whose ``sinks/exports.py`` checked at the end of one
streamed pass): ``ExportReader.read_pages`` over a whole file, no OpenSearch, in a fresh
interpreter per run, the two taking turns. Two files of 40,000 lines each: catalog items
(about 6 MB compressed: spooled in memory) and random text (about 20 MB: spooled on disk).
Printed: wall time, Python's peak allocation (tracemalloc) and peak RSS (VmHWM).

    .venv/bin/python bench/export_read.py [--before fcfb433] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import catalog_item, header, use_services_env  # noqa: E402

CHILD = r"""
import json, sys, time, tracemalloc
from syncer.commands.exports import s3_client
from syncer.sinks.exports import ExportReader

reader = ExportReader(s3_client(), sys.argv[1])
summary = reader.summary()
(data_file,) = reader.data_files(summary)
tracemalloc.start()
started = time.perf_counter()
lines = sum(len(page) for page in reader.read_pages(summary, data_file, 1000))
seconds = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1]
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"lines": lines, "seconds": seconds, "py_mb": peak / 2**20, "rss_mb": hwm / 1024}))
"""


def _tree_before(revision: str) -> Path:
    """The working tree's syncer with ``sinks/exports.py`` as at ``revision``."""
    tree = Path(tempfile.mkdtemp(prefix="syncer-export-read-"))
    shutil.copytree(ROOT / "syncer", tree / "syncer")
    shown = subprocess.run(
        ["git", "show", f"{revision}:syncer/sinks/exports.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    (tree / "syncer" / "sinks" / "exports.py").write_bytes(shown.stdout)
    return tree


def _run(tree: Path, uri: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, uri], cwd=tree, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="fcfb433", help="revision checked at the end")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_services_env()
    header("Export data file read: checked before the first line vs at the end")
    from syncer.sinks.build import aws_client
    from tests.exportfiles import full_line, write_export

    s3 = aws_client("s3")
    bucket = f"bench-export-read-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    rng = random.Random(1)
    files = {
        "catalog": [full_line(catalog_item(n)) for n in range(40_000)],
        "random text": [
            {
                "Item": {
                    "pk": {"S": f"p{n}"},
                    "sk": {"S": "v1"},
                    "blob": {"S": "".join(rng.choices(string.ascii_letters, k=700))},
                }
            }
            for n in range(40_000)
        ],
    }
    before = _tree_before(args.before)
    try:
        for name, lines in files.items():
            export = write_export(s3, bucket, [lines], table="t", prefix=name.replace(" ", "-"))
            size = s3.head_object(Bucket=bucket, Key=export.data_keys[0])["ContentLength"]
            print(f"# {name}: {len(lines):,} lines, {size / 2**20:.1f} MB compressed")
            for _ in range(args.rounds):
                for label, tree in ((f"before ({args.before})", before), ("now", ROOT)):
                    r = _run(tree, export.uri)
                    print(
                        f"{name:12s} {label:18s} {r['seconds']:6.2f} s  Python peak "
                        f"{r['py_mb']:5.1f} MB  peak RSS {r['rss_mb']:6.1f} MB",
                        flush=True,
                    )
    finally:
        shutil.rmtree(before, ignore_errors=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=entry["Key"])
        s3.delete_bucket(Bucket=bucket)


if __name__ == "__main__":
    main()
