"""Cold start: ``import syncer.handler`` plus the first batch, each run in a fresh interpreter.

Three layouts, several runs each, medians:

* ``venv, .pyc cached``: this virtualenv with every module's bytecode already compiled (a warm
  ``PYTHONPYCACHEPREFIX``), the best case;
* ``Lambda package, no .pyc``: syncer and its dependencies copied without ``__pycache__`` into
  one directory, as ``scripts/package_lambda.sh`` built it before it compiled bytecode, run
  with ``-S`` and ``PYTHONDONTWRITEBYTECODE=1`` (``/var/task`` is read-only); boto3 and
  botocore come precompiled from a separate directory, as the Lambda runtime provides them;
* ``Lambda package + .pyc``: the same directory after ``compileall``, as the script builds it
  now.

Each run times the import, then the first ``lambda_handler`` call with 100 records (config,
clients, first requests to the real OpenSearch and Redis), then a second, warm batch. The
process wall time includes interpreter start-up. ``-X importtime`` of the packaged layout
shows where the import goes.

    .venv/bin/python bench/cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    SERVICES_ENV,
    insert_records,
    median,
    start_bench,
    teardown_index,
)

TABLE = "bench_cold"
ALIAS = "bench-cold"
SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six")  # the runtime's own

CHILD = r"""
import json, sys, time
started = time.perf_counter()
import syncer.handler as handler
imported = time.perf_counter()
events = json.load(open(sys.argv[1]))
before_first = time.perf_counter()
assert handler.lambda_handler(events[0], None) == {"batchItemFailures": []}
first = time.perf_counter()
assert handler.lambda_handler(events[1], None) == {"batchItemFailures": []}
second = time.perf_counter()
print(json.dumps({"import_ms": (imported - started) * 1000,
                  "first_batch_ms": (first - before_first) * 1000,
                  "second_batch_ms": (second - first) * 1000,
                  "modules": len(sys.modules)}))
"""


def _site_packages_modules() -> list[str]:
    """Top-level packages from site-packages that the handler and its first batch load."""
    probe = (
        "import sys, syncer.handler, syncer.sinks.build, syncer.sinks.search, syncer.sinks.cache, opensearchpy, "
        "redis, boto3\n"
        "site = [p for p in sys.path if p.endswith('site-packages')][0]\n"
        "names = sorted({n.split('.')[0] for n, m in list(sys.modules.items())\n"
        "                if (getattr(m, '__file__', None) or '').startswith(site)})\n"
        "print(site); print(' '.join(names))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split("\n")
    return [out[0], *out[1].split()]


def build_package(work: Path, compiled: bool) -> tuple[Path, Path]:
    """A Lambda-like package directory (no bytecode) and a precompiled SDK directory."""
    site, *names = _site_packages_modules()
    package, sdk = work / ("package-pyc" if compiled else "package"), work / "sdk"
    package.mkdir()
    sdk.mkdir(exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
    shutil.copytree(ROOT / "syncer", package / "syncer", ignore=ignore)
    for name in names:
        if name == "syncer":
            continue
        source = Path(site) / name
        if name in SDK:
            target = source if source.exists() else Path(site) / f"{name}.py"
            link = sdk / target.name
            if not link.exists():
                link.symlink_to(target)
            continue
        if source.is_dir():
            shutil.copytree(source, package / name, ignore=ignore)
        elif (Path(site) / f"{name}.py").exists():
            shutil.copy2(Path(site) / f"{name}.py", package / f"{name}.py")
        else:  # an extension module (orjson): copy the shared object as is
            for found in Path(site).glob(f"{name}*"):
                if found.is_dir():
                    shutil.copytree(found, package / found.name, ignore=ignore)
                else:
                    shutil.copy2(found, package / found.name)
    if compiled:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(package)],
            check=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
        )
    return package, sdk


def run_child(layout: dict[str, object], events_file: Path) -> dict[str, float]:
    env = dict(layout["env"])  # type: ignore[call-overload]
    started = time.perf_counter()
    done = subprocess.run(
        [*layout["argv"], "-c", CHILD, str(events_file)],  # type: ignore[misc]
        capture_output=True,
        text=True,
        env=env,
        cwd=layout["cwd"],  # type: ignore[arg-type]
        check=False,
    )
    wall_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_ms"] = wall_ms
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work, config_path = start_bench(
        "Cold start: import syncer.handler + first batch, fresh interpreters", "cold", TABLE, ALIAS
    )
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **SERVICES_ENV,
        "SYNCER_CONFIG": str(config_path),
        "SYNCER_METRICS": "off",
        "HOME": os.environ.get("HOME", "/root"),
    }
    warm_cache = work / "pycache"
    package, sdk = build_package(work, compiled=False)
    package_pyc, _ = build_package(work, compiled=True)
    layouts: dict[str, dict[str, object]] = {
        "venv, .pyc cached": {
            "argv": [sys.executable],
            "env": {**base_env, "PYTHONPYCACHEPREFIX": str(warm_cache)},
            "cwd": str(ROOT),
        },
        "Lambda package, no .pyc": {
            "argv": [sys.executable, "-S"],
            "env": {**base_env, "PYTHONPATH": f"{package}:{sdk}", "PYTHONDONTWRITEBYTECODE": "1"},
            "cwd": str(work),
        },
        "Lambda package + .pyc": {
            "argv": [sys.executable, "-S"],
            "env": {
                **base_env,
                "PYTHONPATH": f"{package_pyc}:{sdk}",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            "cwd": str(work),
        },
    }
    # Fill the warm bytecode cache once (writing allowed), outside the figures.
    subprocess.run(
        [sys.executable, "-c", "import syncer.handler, syncer.sinks.build, opensearchpy, boto3"],
        env={**base_env, "PYTHONPYCACHEPREFIX": str(warm_cache)},
        cwd=ROOT,
        check=True,
    )
    first_item = int(time.time()) % 100_000 * 1_000_000
    results: dict[str, list[dict[str, float]]] = {name: [] for name in layouts}
    for _ in range(args.runs):
        for name, layout in layouts.items():  # interleaved, so drift hits every layout
            events = [
                {"Records": insert_records(TABLE, 100, first_item)},
                {"Records": insert_records(TABLE, 100, first_item + 100)},
            ]
            first_item += 200
            events_file = work / "events.json"
            events_file.write_text(json.dumps(events))
            results[name].append(run_child(layout, events_file))
    print(f"{args.runs} runs per layout, medians (min-max); first batch = 100 records")
    print(
        f"{'layout':>26} {'import ms':>16} {'first batch ms':>16} {'import+first':>13} "
        f"{'2nd batch ms':>12} {'process ms':>11}"
    )
    summary = []
    for name, runs in results.items():

        def fig(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{median(values):.0f} ({min(values):.0f}-{max(values):.0f})"

        total = median([r["import_ms"] + r["first_batch_ms"] for r in runs])
        print(
            f"{name:>26} {fig('import_ms'):>16} {fig('first_batch_ms'):>16} {total:>13.0f} "
            f"{median([r['second_batch_ms'] for r in runs]):>12.0f} "
            f"{median([r['process_ms'] for r in runs]):>11.0f}"
        )
        summary.append(
            f"{name.split(',')[0].split(' ')[0].lower()}"
            f"{'_pyc' if 'pyc' in name and 'no' not in name else ''}"
            f"_import_ms={median([r['import_ms'] for r in runs]):.0f}"
        )
    print("target: the import adds < 250 ms")
    # Where the import goes in the packaged layout (one extra run, -X importtime).
    layout = layouts["Lambda package, no .pyc"]
    done = subprocess.run(
        [*layout["argv"], "-X", "importtime", "-c", "import syncer.handler"],  # type: ignore[misc]
        capture_output=True,
        text=True,
        env=layout["env"],  # type: ignore[arg-type]
        cwd=layout["cwd"],  # type: ignore[arg-type]
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 6:
            rows.append((int(cumulative), name.strip(), depth))
    print("largest imports under syncer.handler (Lambda package, no .pyc; cumulative ms):")
    for cumulative, name, depth in sorted(rows, reverse=True)[:14]:
        print(f"  {cumulative / 1000:7.1f}  {'  ' * depth}{name}")
    print("RESULT cold_start " + " ".join(summary))
    teardown_index(config_path)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
