"""CPU path on one core: decode -> coalesce -> plan -> ``_bulk`` body bytes, in records/s.

Three implementations run interleaved on the same batches, so machine noise hits them alike:

* ``syncer``: ``decode_records``, ``coalesce_latest_per_key``, a ``KeyWork`` per key and the
  batch's ``ChangePlanner`` (``plan_document_write`` in revisions before them) against
  an absent document (``create`` actions), ``plan_cache_keys`` and ``search.bulk_chunks``;
* ``syncer@REV``: the same code with the owned pure modules (attributes, records, coalesce,
  plan, jsoncodec) as they are at git revision REV (default HEAD), to show what the
  optimisations did; with ``--whole``, the whole syncer package as it is at REV, the
  collector paused as for ``syncer`` (a like-for-like comparison of two revisions);
* ``baseline``: how peer Lambdas write it: boto3's ``TypeDeserializer``, a last-write-wins dict,
  opensearch-py's ``expand_action`` and the chunker and JSON serializer ``helpers.bulk`` uses
  (``json.dumps``; Decimal -> float; sets made lists, which peers must add).

Every run gets a fresh event parsed from JSON text (as the Lambda runtime hands it over, so
the garbage collector sees a realistic heap), and CPU time of this process is measured.
No network. Prints figures; ``--profile`` prints a cProfile of syncer's path instead.

    .venv/bin/python bench/cpu_path.py [--records 10000] [--repeats 7] [--gc default|off|freeze]
        [--workload insert|update] [--before REV [--whole]] [--instructions]

``--workload update`` sends MODIFYs that carry an OldImage as well (syncer decodes only what it
reads of it; the baseline, like peer Lambdas, ignores it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CACHE_KEYS,
    SEQUENCE_BASE,
    catalog_item,
    header,
    insert_records,
    median,
    stream_record,
    syncer_tree_at,
    whole_syncer_tree_at,
)

TABLE = "catalog"
INDEX = "catalog-000001"  # the concrete index behind the alias, as _mget reports it
BULK_MAX_ACTIONS = 5000  # syncer's defaults ([opensearch] bulk_max_actions / bulk_max_bytes)
BULK_MAX_BYTES = 5 * 1024 * 1024

CpuPath = Callable[[Sequence[dict[str, Any]]], tuple[int, int]]


# ---------------------------------------------------------------------------------------------
# syncer's path (the working tree, or another revision of the owned modules)
# ---------------------------------------------------------------------------------------------
def syncer_path(stages: int = 5, gc_paused: bool = True) -> CpuPath:
    """The pure stages as the pipeline runs them; ``stages`` < 5 stops early (instructions).

    ``gc_paused``: hold the cycle collector off around the batch, as ``process_batch`` does.
    """
    from syncer.config import TableConfig
    from syncer.core import plan
    from syncer.core.coalesce import coalesce_latest_per_key
    from syncer.core.plan import plan_cache_keys
    from syncer.core.records import decode_records
    from syncer.sinks.search import bulk_chunks

    table = TableConfig(TABLE, "catalog", tuple(CACHE_KEYS), frozenset({"cost"}))
    plan_batch = _planning_path(plan, table)
    # As process_batch decodes: only what syncer reads of an OldImage (in trees that do so).
    read_fields = getattr(plan, "old_image_fields", None)
    old_fields = None if read_fields is None else {TABLE: read_fields(table)}

    def decode(records: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        if old_fields is None:
            return decode_records(records)
        return decode_records(records, old_fields)

    def run(records: Sequence[dict[str, Any]]) -> tuple[int, int]:
        if not gc_paused or not gc.isenabled():
            return stages_of(records)
        gc.disable()
        try:
            return stages_of(records)
        finally:
            gc.enable()

    def stages_of(records: Sequence[dict[str, Any]]) -> tuple[int, int]:
        decoded, rejected = decode(records)
        assert not rejected, rejected[:1]
        if stages < 2:
            return 0, 0
        changes = coalesce_latest_per_key(decoded)
        if stages < 3:
            return 0, 0
        writes = [write for write in plan_batch(changes) if write is not None]
        if stages < 4:
            return 0, 0
        cache_keys: set[str] = set()
        for change in changes:
            # As the pipeline calls it: no indexed state, no item read from the table.
            cache_keys |= plan_cache_keys(change, table, (None, None))
        if stages < 5:
            return 0, len(cache_keys)
        size = 0
        for _, body in bulk_chunks(writes, BULK_MAX_ACTIONS, BULK_MAX_BYTES, []):
            size += len(body)
        return size, len(cache_keys)

    return run


def bench_transform(item: dict[str, Any]) -> dict[str, Any]:
    """The routed variant's transform: a lower-case title field added, as a search shape."""
    return {**item, "title_lower": str(item.get("title", "")).lower()}


ROUTED_TRANSFORM = "bench.cpu_path:bench_transform"


def routed_path() -> CpuPath:
    """syncer's path over a routed table: three routes, one transform (issue 14).

    As the pipeline does it: each change is routed (and transformed) once, then planned for
    every route index (its document in one, a tombstone in the two others), its cache keys
    rendered with each state's route, and every write goes into the ``_bulk`` body.
    """
    from syncer.config import Route, RouteMatch, TableConfig
    from syncer.core.coalesce import coalesce_latest_per_key
    from syncer.core.documents import TargetState
    from syncer.core.plan import plan_cache_keys, plan_write
    from syncer.core.records import decode_records
    from syncer.core.routes import document_in, route_item
    from syncer.sinks.search import bulk_chunks

    table = TableConfig(
        TABLE,
        "",
        routes=(
            Route("variants-a", RouteMatch("sk", "equals", "variant-0"), ("product:{pk}",)),
            Route(
                "variants-b",
                RouteMatch("sk", "begins_with", "variant-1"),
                tuple(CACHE_KEYS),
                frozenset({"cost"}),
                ROUTED_TRANSFORM,
            ),
            Route(
                "variants-c",
                RouteMatch("sk", "begins_with", "variant"),
                tuple(CACHE_KEYS),
                frozenset({"cost"}),
            ),
        ),
    )
    routes = [(route, table.route_table(route)) for route in table.resolved_routes]
    targets = {route.index: TargetState(f"{route.index}-000001", None) for route, _ in routes}

    def run(records: Sequence[dict[str, Any]]) -> tuple[int, int]:
        gc.disable()
        try:
            decoded, rejected = decode_records(records)
            assert not rejected, rejected[:1]
            changes = coalesce_latest_per_key(decoded)
            writes = []
            cache_keys: set[str] = set()
            for change in changes:
                state = route_item(table, change.latest.new_image)
                for route, view in routes:
                    write = plan_write(
                        change, view, document_in(state, route), targets[route.index]
                    )
                    writes.append(write)
                cache_keys |= plan_cache_keys(change, table)
            size = 0
            for _, body in bulk_chunks(writes, BULK_MAX_ACTIONS, BULK_MAX_BYTES, []):  # type: ignore[arg-type]
                size += len(body)
            return size, len(cache_keys)
        finally:
            gc.enable()

    return run


def _planning_path(plan: Any, table: Any) -> Callable[[Any], list[Any]]:
    """How the pipeline of this tree plans a batch's changes into the table's absent documents.

    Today: a ``KeyWork`` per key and one ``ChangePlanner`` for the batch, as ``process_batch``
    does. Revisions before it (the module may come from another revision's tree, so ask the
    module, not an import) had ``plan_document_write``: before 298eb3c with the concrete index
    as ``index=``, later with a ``TargetState``.
    """
    from syncer.core.documents import TargetState

    old = getattr(plan, "plan_document_write", None)
    if old is not None:
        if "index" in inspect.signature(old).parameters:
            return lambda changes: [old(c, table, None, index=INDEX) for c in changes]
        absent = TargetState(INDEX, None)
        return lambda changes: [old(c, table, absent) for c in changes]
    from syncer.core.planners import ChangePlanner
    from syncer.core.work import KeyWork

    target = TargetState(INDEX, None)

    def plan_batch(changes: Any) -> list[Any]:
        works = [KeyWork.start(change, table) for change in changes]
        planner = ChangePlanner(works)
        return [planner(work.home, target, None) for work in works]

    return plan_batch


def syncer_path_at(revision: str, whole: bool = False) -> CpuPath:
    """syncer's path with the owned modules taken from ``revision``, in its own module tree.

    ``whole``: every module of the package as at ``revision``, the collector paused around
    the batch as ``syncer_path`` pauses it (the owned-modules variant runs with it on).
    """
    tree = whole_syncer_tree_at(revision) if whole else syncer_tree_at(revision)
    current = {k: m for k, m in sys.modules.items() if k == "syncer" or k.startswith("syncer.")}
    for name in current:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        run = syncer_path(gc_paused=whole)
    finally:
        sys.path.remove(str(tree))
        for name in [k for k in sys.modules if k == "syncer" or k.startswith("syncer.")]:
            del sys.modules[name]
        sys.modules.update(current)
        shutil.rmtree(tree, ignore_errors=True)
    return run


# ---------------------------------------------------------------------------------------------
# The baseline: how peer Lambdas (AWS samples, blog posts) write it
# ---------------------------------------------------------------------------------------------
def baseline_path() -> CpuPath:
    from boto3.dynamodb.types import TypeDeserializer
    from opensearchpy.helpers.actions import _chunk_actions, expand_action
    from opensearchpy.serializer import JSONSerializer

    class PeerSerializer(JSONSerializer):
        """opensearch-py's serializer; sets (from TypeDeserializer) become lists, as peers add."""

        def default(self, data: Any) -> Any:
            if isinstance(data, set):
                return sorted(data, key=str)
            return super().default(data)

    deserializer = TypeDeserializer()
    serializer = PeerSerializer()
    excluded = {"cost"}

    def deserialize(image: dict[str, Any]) -> dict[str, Any]:
        return {name: deserializer.deserialize(value) for name, value in image.items()}

    def run(records: Sequence[dict[str, Any]]) -> tuple[int, int]:
        latest: dict[str, dict[str, Any]] = {}
        cache_keys: set[str] = set()
        for record in records:
            ddb = record["dynamodb"]
            keys = deserialize(ddb["Keys"])
            doc_id = "|".join(str(keys[name]) for name in sorted(keys))
            if record["eventName"] == "REMOVE":
                action: dict[str, Any] = {"_op_type": "delete", "_index": INDEX, "_id": doc_id}
                image = keys
            else:
                image = deserialize(ddb["NewImage"])
                source = {k: v for k, v in image.items() if k not in excluded}
                source["_syncer"] = {
                    "seq": ddb["SequenceNumber"].zfill(40),
                    "table": TABLE,
                    "deleted": False,
                    "changed_at": int(float(ddb["ApproximateCreationDateTime"]) * 1000),
                }
                action = {"_op_type": "create", "_index": INDEX, "_id": doc_id, "_source": source}
            latest[doc_id] = action  # last write wins
            for template in CACHE_KEYS:
                with contextlib.suppress(KeyError):  # a template's attribute is absent
                    cache_keys.add(template.format(**image))
        size = 0
        # What helpers.bulk does before each HTTP call, with its defaults (500 actions, 100 MB).
        actions = map(expand_action, latest.values())
        for _, lines in _chunk_actions(actions, 500, 100 * 1024 * 1024, serializer):
            size += len(("\n".join(lines) + "\n").encode("utf-8"))
        return size, len(cache_keys)

    return run


# ---------------------------------------------------------------------------------------------
class CollectorClock:
    """Seconds spent in CPython's cyclic garbage collector, read through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


@dataclass
class Runs:
    seconds: list[float] = field(default_factory=list)
    gc_seconds: list[float] = field(default_factory=list)
    page_faults: list[int] = field(default_factory=list)


def measure(
    paths: dict[str, CpuPath], event_json: bytes, repeats: int, gc_mode: str
) -> dict[str, Runs]:
    """CPU seconds per run of each path; the order rotates each round, a fresh event per run."""
    runs = {name: Runs() for name in paths}
    names = list(paths)
    clock = CollectorClock()
    for round_number in range(repeats + 1):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            records = json.loads(event_json)["Records"]
            if gc_mode == "freeze":
                gc.freeze()  # as if the heap were frozen before the handler is called
            elif gc_mode == "off":
                gc.disable()
            clock.seconds = 0.0
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            started = time.process_time()
            paths[name](records)
            elapsed = time.process_time() - started
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            gc.enable()
            if gc_mode == "freeze":
                gc.unfreeze()
            del records
            if round_number:  # round 0 warms up
                runs[name].seconds.append(elapsed)
                runs[name].gc_seconds.append(clock.seconds)
                runs[name].page_faults.append(faults)
    return runs


STAGES = ("decode", "coalesce", "plan", "cache keys", "bulk body")


def update_records(table: str, count: int) -> list[dict[str, Any]]:
    """``count`` MODIFY records of distinct items, each with its previous state as OldImage."""
    return [
        stream_record(
            table,
            catalog_item(n, random.Random(n * 1_000 + 1)),  # other price, brand, category...
            SEQUENCE_BASE + n * 100,
            "MODIFY",
            old_item=catalog_item(n, random.Random(n * 1_000)),
        )
        for n in range(count)
    ]


WORKLOADS = {"insert": insert_records, "update": update_records}


def _count_run(
    variant: str, stages: int, batches: int, records: int, workload: str, whole: bool
) -> None:
    """What one valgrind run executes: build the paths, then run ``batches`` batches."""
    gc.disable()  # instructions of the path itself, without the collector's share
    if variant == "syncer":
        run = syncer_path(stages)
    elif variant == "baseline":
        run = baseline_path()
    else:
        run = syncer_path_at(variant.split("@", 1)[1], whole)
    event_json = json.dumps({"Records": WORKLOADS[workload](TABLE, records)}).encode()
    events = [json.loads(event_json)["Records"] for _ in range(3)]  # same work in every run
    run(events[0])
    for records_ in events[1 : 1 + batches]:
        run(records_)


def _instructions(
    variant: str,
    stages: int = len(STAGES),
    records: int = 1000,
    workload: str = "insert",
    whole: bool = False,
) -> float:
    """Instructions per record of ``variant`` (callgrind: runs with 2 batches minus 0)."""
    collected = []
    for batches in (0, 2):
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                __file__,
                "--count-run",
                variant,
                "--count-stages",
                str(stages),
                "--count-batches",
                str(batches),
                "--records",
                str(records),
                "--workload",
                workload,
                *(["--whole"] if whole else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        collected.append(int(done.stderr.split("Collected :")[1].split()[0]))
    return (collected[1] - collected[0]) / (2 * records)


def instruction_counts(before: str, workload: str = "insert", whole: bool = False) -> None:
    """Noise-free CPU cost: instructions per record, per variant and per syncer stage."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = {
        "baseline": ("baseline", len(STAGES)),
        "syncer": ("syncer", len(STAGES)),
        f"syncer@{before}": (f"syncer@{before}", len(STAGES)),
        **{f"upto{stage}": ("syncer", stage) for stage in range(1, len(STAGES))},
    }
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {
            name: pool.submit(_instructions, *job, 1000, workload, whole)
            for name, job in jobs.items()
        }
        counts = {name: future.result() for name, future in futures.items()}
    print(
        f"instructions per record (valgrind callgrind, 1,000-record {workload} batches, "
        "collector off):"
    )
    for variant in ("baseline", "syncer", f"syncer@{before}"):
        print(f"{variant:>24}: {counts[variant]:>9,.0f}")
    previous = 0.0
    for stage in range(1, len(STAGES) + 1):
        upto = counts["syncer"] if stage == len(STAGES) else counts[f"upto{stage}"]
        print(f"{'syncer ' + STAGES[stage - 1]:>24}: {upto - previous:>9,.0f}")
        previous = upto
    print(
        f"syncer vs baseline: {counts['baseline'] / counts['syncer']:.2f}x fewer instructions; "
        f"vs {before}: {counts[f'syncer@{before}'] / counts['syncer']:.2f}x"
    )
    print(
        f"RESULT cpu_instructions syncer={counts['syncer']:.0f} baseline={counts['baseline']:.0f} "
        f"before={counts[f'syncer@{before}']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="records per batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--before", default="af36713", help="git revision of the 'before' modules (pre-tuning)"
    )
    parser.add_argument("--no-before", action="store_true", help="skip the before variant")
    parser.add_argument(
        "--whole",
        action="store_true",
        help="the before variant is the whole package at REV, the collector paused as syncer's",
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="insert",
        help="INSERTs of new items (default), or MODIFYs carrying an OldImage too",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile syncer's path")
    parser.add_argument(
        "--routed",
        action="store_true",
        help="add syncer's path over a routed table (three routes, one transform)",
    )
    parser.add_argument(
        "--gc",
        choices=["default", "off", "freeze"],
        default="default",
        help="collector during each run: as Lambda has it (default), disabled, or frozen heap",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per record with valgrind instead (noise-free, ~10 minutes)",
    )
    parser.add_argument("--count-run", help=argparse.SUPPRESS)
    parser.add_argument("--count-stages", type=int, default=len(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--count-batches", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_run:
        _count_run(
            args.count_run,
            args.count_stages,
            args.count_batches,
            args.records,
            args.workload,
            args.whole,
        )
        return
    if args.instructions:
        header("CPU path: instructions per record")
        instruction_counts(args.before, args.workload, args.whole)
        return
    header("CPU path: decode + coalesce + plan + bulk body, one core")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, stated not assumed
    records = WORKLOADS[args.workload](TABLE, args.records)
    event_json = json.dumps({"Records": records}).encode()
    kind = "INSERT records" if args.workload == "insert" else "MODIFY records (both images)"
    print(
        f"item: {len(catalog_item(0))} attributes, {len(json.dumps(catalog_item(0)))} B typed "
        f"JSON; record: {len(event_json) // args.records} B; batch: {args.records} {kind} "
        f"with unique keys; gc: {args.gc}; MALLOC_TRIM_THRESHOLD_="
        f"{os.environ.get('MALLOC_TRIM_THRESHOLD_', 'unset')}; pinned to CPU "
        f"{min(os.sched_getaffinity(0))}"
    )
    if args.profile:
        import cProfile
        import pstats

        run = syncer_path()
        profiler = cProfile.Profile()
        profiler.runcall(run, json.loads(event_json)["Records"])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    paths = {"baseline": baseline_path(), "syncer": syncer_path()}
    if args.routed:
        paths["syncer-routed"] = routed_path()
    if not args.no_before:
        paths[f"syncer@{args.before}"] = syncer_path_at(args.before, args.whole)
    outputs = {name: run(json.loads(event_json)["Records"]) for name, run in paths.items()}
    body_bytes, cache_keys = outputs["syncer"]
    print(f"syncer bulk body: {body_bytes:,} B; cache keys: {cache_keys:,}")
    print(f"baseline bulk body: {outputs['baseline'][0]:,} B")
    runs = measure(paths, event_json, args.repeats, args.gc)
    rates = {name: args.records / median(r.seconds) for name, r in runs.items()}
    print(
        f"{'':>16}  {'records/s':>9} {'us/record':>9} {'runs (s/batch)':>15} {'in gc':>6} "
        f"{'page faults':>11}"
    )
    for name, r in runs.items():
        print(
            f"{name:>16}: {rates[name]:>9,.0f} {1e6 / rates[name]:>9.1f} "
            f"{min(r.seconds):>7.3f}-{max(r.seconds):<7.3f} "
            f"{median(r.gc_seconds) / median(r.seconds):>6.0%} {median(r.page_faults):>11,.0f}"
        )
    print(
        f"(median of {args.repeats} runs each; in gc = share of CPU time in the cyclic collector)"
    )
    speedup = rates["syncer"] / rates["baseline"]
    print(f"syncer vs baseline: {speedup:.2f}x (target >= 4x and >= 150,000 records/s)")
    summary = f"syncer_rps={rates['syncer']:.0f} baseline_rps={rates['baseline']:.0f}"
    for name in paths:
        if name.startswith("syncer@"):
            print(f"syncer vs {name}: {rates['syncer'] / rates[name]:.2f}x")
            summary += f" before_rps={rates[name]:.0f}"
    if args.routed:
        print(f"syncer-routed vs syncer: {rates['syncer-routed'] / rates['syncer']:.2f}x the rate")
        summary += f" routed_rps={rates['syncer-routed']:.0f}"
    print(f"RESULT cpu_path gc={args.gc} {summary} speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
