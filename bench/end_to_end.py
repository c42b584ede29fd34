"""End to end through ``syncer.handler.lambda_handler`` on the real OpenSearch and Redis.

Two workloads, in the exact Lambda event format (NEW_AND_OLD_IMAGES, ~1 KB catalog items):

* **update** (the figure that counts, the catalog stream's shape): MODIFY records of items
  already indexed, 10% of the records REMOVE, and about 20% of the records repeat a key already
  in the same batch (so a batch of 1,000 has about 800 keys). Every key of a batch was indexed
  before the batch and is touched by no other batch of the run;
* **update-cold**: the same, but syncer keeps no state of these keys (as when another
  container, a rebuild or a backfill indexed them): every key is read (``_mget``) first. In
  **update** the keys were indexed through the same handler, so their states are known
  (docs/ordering.md, "Mechanism") and only the alias is resolved;
* **insert** (the second figure): INSERT records of distinct new items.

Each batch goes to three handlers, each with its own index (same template, same cache keys):

* syncer, through ``lambda_handler``;
* ``helpers.bulk``: ``TypeDeserializer``, opensearch-py ``helpers.bulk`` with its defaults
  (500 actions per request), then every record's cache keys deleted in ONE Redis pipeline; its
  cycle collector held off for each call as syncer holds its own (``--peer-gc on`` leaves it
  on, as peer Lambdas usually run: its CPU then varies twofold between runs);
* per record: ``TypeDeserializer``, one ``index`` (or ``delete``) call and one Redis ``DEL`` per
  record, as the AWS samples do (measured on the first ``PER_RECORD_MAX_RECORDS`` records).

The handlers take turns batch by batch, and the whole measurement is repeated ``--runs`` times
(each run on fresh keys), so the machine's busy moments are spread over every handler: the
machine is shared, so read the ranges over the runs, not one figure. For syncer it also reports
where the wall time goes (``StageClock``): decode, coalesce, plan, cache keys and the ``_bulk``
body (CPU), the reindex-alias ``HEAD``, the ``_mget`` that reads indexed versions, the ``_bulk``
HTTP calls with OpenSearch's own ``took`` (the limit to approach), the Redis invalidation, and
the rest. Stages that overlap in time are each counted in full; "rest" is the wall time no stage
covers. OpenSearch's own get and indexing times per index (``_stats``) show what the server
spent on each handler's documents. Each handler's CPU time in this process (``process_time``)
splits its wall time into its own work and its waiting on the services; from them the summary
says how much CPU 1.5x ``helpers.bulk`` would leave syncer, run by run.

    .venv/bin/python bench/end_to_end.py [--sizes 1000] [--runs 5] \
        [--workloads update,update-cold,insert]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CACHE_KEYS,
    OPENSEARCH_URL,
    REDIS_URL,
    SEQUENCE_BASE,
    catalog_item,
    start_bench,
    stream_record,
    teardown_index,
)

TABLE = "bench_e2e"
ALIAS = "bench-e2e"
PEER_INDEX = "bench-e2e-peer"
PER_RECORD_INDEX = "bench-e2e-per-record"
# Batches of each size per handler per run: enough records for a steady figure.
BATCHES = {100: 20, 1000: 6, 10000: 1}
PER_RECORD_MAX_RECORDS = 1000  # per run and workload: two round trips per record is slow
REPEATED_SHARE = 0.2  # of a batch's records repeat a key already in the batch
REMOVE_SHARE = 0.1  # of a batch's records are REMOVEs
PRELOAD_BATCH = 1000


class Numbers:
    """Item numbers and sequence numbers never used before in this run."""

    def __init__(self) -> None:
        self.next_key = int(time.time()) % 100_000 * 1_000_000
        self.next_sequence = SEQUENCE_BASE + 10**15

    def keys(self, count: int) -> range:
        first = self.next_key
        self.next_key += count
        return range(first, first + count)

    def sequence(self) -> int:
        self.next_sequence += 100  # gapped, as production's
        return self.next_sequence


def _image(number: int, revision: int) -> dict[str, Any]:
    """Revision ``revision`` of item ``number``: other stock, price, brand, category..."""
    return catalog_item(number, random.Random(number * 1_000 + revision))


def insert_batch(numbers: Numbers, size: int) -> list[dict[str, Any]]:
    """``size`` INSERT records of new items."""
    return [
        stream_record(TABLE, _image(n, 0), numbers.sequence(), "INSERT") for n in numbers.keys(size)
    ]


def update_batch(numbers: Numbers, keys: list[int], size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` records over ``keys`` (indexed at revision 0): MODIFYs, repeats, REMOVEs.

    Each key gets one record, ``size - len(keys)`` more records repeat random keys, and the last
    record of ``REMOVE_SHARE * size`` keys is a REMOVE. Records of one key carry increasing
    sequence numbers, each MODIFY's OldImage the key's previous revision.
    """
    rng = random.Random(seed)
    order = list(keys) + [rng.choice(keys) for _ in range(size - len(keys))]
    rng.shuffle(order)
    last = {key: position for position, key in enumerate(order)}
    removed = set(rng.sample(keys, int(size * REMOVE_SHARE)))
    revision = dict.fromkeys(keys, 0)
    records = []
    for position, key in enumerate(order):
        old = _image(key, revision[key])
        if key in removed and last[key] == position:
            record = stream_record(TABLE, old, numbers.sequence(), "REMOVE", old_item=old)
        else:
            revision[key] += 1
            new = _image(key, revision[key])
            record = stream_record(TABLE, new, numbers.sequence(), "MODIFY", old_item=old)
        records.append(record)
    return records


@dataclass
class Workload:
    """The events of one workload, size and run: built before timing, shared by the handlers."""

    name: str
    size: int
    events: list[dict[str, Any]]
    preload: list[dict[str, Any]]  # INSERTs of the keys the updates modify (not timed)


def build_workload(name: str, size: int, batches: int, numbers: Numbers, seed: int) -> Workload:
    if name == "insert":
        events = [{"Records": insert_batch(numbers, size)} for _ in range(batches)]
        return Workload(name, size, events, [])
    distinct = size - int(size * REPEATED_SHARE)
    preload: list[dict[str, Any]] = []
    events = []
    for batch in range(batches):
        keys = list(numbers.keys(distinct))
        preload.extend(
            stream_record(TABLE, _image(n, 0), SEQUENCE_BASE + n * 100, "INSERT") for n in keys
        )
        events.append({"Records": update_batch(numbers, keys, size, seed * 1_000 + batch)})
    return Workload(name, size, events, preload)


# ---------------------------------------------------------------------------------------------
# Timing syncer's stages
# ---------------------------------------------------------------------------------------------
STAGES = ("decode", "coalesce", "plan", "keys", "body", "HEAD", "_mget", "_bulk", "redis")


@dataclass
class Stages:
    """What ``StageClock`` recorded for one handler: intervals per stage, ``took``, calls."""

    intervals: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {stage: [] for stage in STAGES}
    )
    took_ms: float = 0.0
    bulk_calls: int = 0

    def reset(self) -> None:
        for spans in self.intervals.values():
            spans.clear()
        self.took_ms = 0.0
        self.bulk_calls = 0

    def seconds(self) -> dict[str, float]:
        """Each stage's summed time, ``took``, and ``covered``: the union of all intervals."""
        totals = {
            stage: sum(end - start for start, end in spans)
            for stage, spans in self.intervals.items()
        }
        totals["took"] = self.took_ms / 1000
        covered = 0.0
        reach = float("-inf")
        for start, end in sorted(span for spans in self.intervals.values() for span in spans):
            if end <= reach:
                continue
            covered += end - max(start, reach)
            reach = end
        totals["covered"] = covered
        return totals


class StageClock:
    """Times syncer's stages inside the real ``lambda_handler`` by wrapping what each calls.

    Each call records its (start, end) interval into ``active``, from whichever thread it runs
    in. Wrapping costs two ``perf_counter`` calls per call. A name the code no longer has is
    left untimed (its stage shows 0).
    """

    def __init__(self) -> None:
        self.active = Stages()

    def timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            spans = self.active.intervals[stage]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spans.append((started, time.perf_counter()))

        return run

    def timed_chunks(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``bulk_chunks`` is a generator: time the serialising done by each ``next``."""

        def run(*args: Any, **kwargs: Any) -> Iterator[Any]:
            spans = self.active.intervals["body"]
            chunks = function(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    spans.append((started, time.perf_counter()))
                    return
                spans.append((started, time.perf_counter()))
                yield chunk

        return run

    def wrap(self, stage: str, owners: tuple[Any, ...], name: str) -> None:
        for owner in owners:
            if hasattr(owner, name):
                setattr(owner, name, self.timed(stage, getattr(owner, name)))

    def install(self, client: Any) -> None:
        import importlib

        modules = [
            importlib.import_module(name)
            for name in (
                "syncer.pipeline",
                "syncer.core.work",
                "syncer.core.planners",
                "syncer.sinks.cache",
                "syncer.core.rounds",
                "syncer.sinks.search.sink",
            )
            if importlib.util.find_spec(name) is not None
        ]
        owners = tuple(modules)
        self.wrap("decode", owners, "decode_records")
        self.wrap("coalesce", owners, "coalesce_latest_per_key")
        self.wrap("plan", owners, "plan_write")
        self.wrap("plan", owners, "plan_change")
        self.wrap("keys", owners, "plan_cache_keys")
        self.wrap("redis", owners, "invalidate")
        for module in modules:
            if hasattr(module, "bulk_chunks"):
                module.bulk_chunks = self.timed_chunks(module.bulk_chunks)
        client.indices.exists_alias = self.timed("HEAD", client.indices.exists_alias)
        client.mget = self.timed("_mget", client.mget)
        bulk = self.timed("_bulk", client.bulk)

        def counted_bulk(*args: Any, **kwargs: Any) -> Any:
            response = bulk(*args, **kwargs)
            self.active.took_ms += response.get("took", 0)
            self.active.bulk_calls += 1
            return response

        client.bulk = counted_bulk


@dataclass
class OpenSearchTimer:
    """Wraps a peer client's ``bulk`` to time the HTTP calls and sum ``took``."""

    bulk_s: float = 0.0
    took_ms: float = 0.0
    bulk_calls: int = 0

    def install(self, client: Any) -> None:
        bulk = client.bulk

        def timed_bulk(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            response = bulk(*args, **kwargs)
            self.bulk_s += time.perf_counter() - started
            self.took_ms += response.get("took", 0)
            self.bulk_calls += 1
            return response

        client.bulk = timed_bulk

    def reset(self) -> None:
        self.bulk_s = self.took_ms = 0.0
        self.bulk_calls = 0


# ---------------------------------------------------------------------------------------------
# The handlers
# ---------------------------------------------------------------------------------------------
def syncer_handler(config_path: Path) -> tuple[Callable[[dict[str, Any]], Any], Stages, Any]:
    """syncer's ``lambda_handler`` with its stages timed; its OpenSearch client."""
    import os

    os.environ["SYNCER_CONFIG"] = str(config_path)
    os.environ["SYNCER_METRICS"] = "off"  # no EMF line on stdout per batch
    from syncer import handler

    handler.reset_container()
    container = handler._get_container()
    client = _raw_search_client(container.sinks)
    clock = StageClock()
    clock.install(client)

    def run(event: dict[str, Any]) -> Any:
        response = handler.lambda_handler(event, None)
        assert response == {"batchItemFailures": []}, response
        return response

    return run, clock.active, client


def _raw_search_client(sinks: Any) -> Any:
    """The opensearch-py client inside syncer's sinks, wherever this revision keeps it."""
    for path in ("opensearch", "search.client", "search_client"):
        owner = sinks
        try:
            for name in path.split("."):
                owner = getattr(owner, name)
        except AttributeError:
            continue
        return owner
    raise AttributeError("no OpenSearch client found in syncer's sinks")


def _peer_clients() -> tuple[Any, Any, Any]:
    import redis
    from boto3.dynamodb.types import TypeDeserializer
    from opensearchpy import OpenSearch
    from opensearchpy.serializer import JSONSerializer

    class PeerSerializer(JSONSerializer):
        """opensearch-py's serializer; sets (from TypeDeserializer) become lists."""

        def default(self, data: Any) -> Any:
            if isinstance(data, set):
                return sorted(data, key=str)
            return super().default(data)

    client = OpenSearch(hosts=[OPENSEARCH_URL], serializer=PeerSerializer(), timeout=60)
    return client, redis.Redis.from_url(REDIS_URL), TypeDeserializer()


def _peer_cache_keys(image: dict[str, Any]) -> list[str]:
    keys = []
    for template in CACHE_KEYS:
        try:
            keys.append(template.format(**image))
        except KeyError:  # a template's attribute is absent: that key does not exist
            continue
    return keys


def per_record_handler() -> tuple[Callable[[dict[str, Any]], Any], OpenSearchTimer]:
    """The AWS-sample shape: one index/delete call and one Redis DEL per record."""
    client, cache, deserializer = _peer_clients()

    def run(event: dict[str, Any]) -> None:
        for record in event["Records"]:
            ddb = record["dynamodb"]
            keys = {k: deserializer.deserialize(v) for k, v in ddb["Keys"].items()}
            doc_id = "|".join(str(keys[name]) for name in sorted(keys))
            if record["eventName"] == "REMOVE":
                client.delete(index=PER_RECORD_INDEX, id=doc_id, params={"ignore": "404"})
                image = {k: deserializer.deserialize(v) for k, v in ddb["OldImage"].items()}
            else:
                image = {k: deserializer.deserialize(v) for k, v in ddb["NewImage"].items()}
                image.pop("cost", None)
                client.index(index=PER_RECORD_INDEX, id=doc_id, body=image)
            cache.delete(*_peer_cache_keys(image))

    return run, OpenSearchTimer()


def helpers_bulk_handler(
    collector_paused: bool = False,
) -> tuple[Callable[[dict[str, Any]], Any], OpenSearchTimer]:
    """``helpers.bulk`` with its defaults, then every cache key deleted in one pipeline.

    ``collector_paused``: the cycle collector held off for the call, as syncer holds it.
    """
    from opensearchpy import helpers

    client, cache, deserializer = _peer_clients()
    timer = OpenSearchTimer()
    timer.install(client)

    def run(event: dict[str, Any]) -> None:
        if not collector_paused or not gc.isenabled():
            handle(event)
            return
        gc.disable()
        try:
            handle(event)  # its values are freed when it returns, before the collector is on
        finally:
            gc.enable()

    def handle(event: dict[str, Any]) -> None:
        actions = []
        images = []
        for record in event["Records"]:
            ddb = record["dynamodb"]
            keys = {k: deserializer.deserialize(v) for k, v in ddb["Keys"].items()}
            doc_id = "|".join(str(keys[name]) for name in sorted(keys))
            if record["eventName"] == "REMOVE":
                actions.append({"_op_type": "delete", "_index": PEER_INDEX, "_id": doc_id})
                images.append({k: deserializer.deserialize(v) for k, v in ddb["OldImage"].items()})
            else:
                image = {k: deserializer.deserialize(v) for k, v in ddb["NewImage"].items()}
                image.pop("cost", None)
                actions.append({"_index": PEER_INDEX, "_id": doc_id, "_source": image})
                images.append(image)
        # A REMOVE of a key a record before it in this batch indexed is never a 404; one of a
        # key gone already is, and counts as done (the peers' usual choice).
        _, errors = helpers.bulk(client, actions, raise_on_error=False)
        assert all("delete" in e and e["delete"]["status"] == 404 for e in errors), errors[:3]
        pipe = cache.pipeline(transaction=False)
        for image in images:
            pipe.delete(*_peer_cache_keys(image))
        pipe.execute()

    return run, timer


# ---------------------------------------------------------------------------------------------
@dataclass
class Figure:
    handler: str
    workload: str
    batch_size: int
    run: int
    records: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time in the handler (all its threads)
    bulk_s: float = 0.0
    took_ms: float = 0.0
    bulk_calls: int = 0
    get_ms: float = 0.0  # OpenSearch's own get time on this handler's index (_stats)
    index_ms: float = 0.0  # ... and its indexing time
    stages: dict[str, float] = field(default_factory=dict)  # syncer's, from StageClock

    @property
    def rate(self) -> float:
        return self.records / self.wall_s

    def share(self, stage: str) -> float:
        return self.stages.get(stage, 0.0) / self.wall_s


@dataclass
class Contender:
    name: str
    run: Callable[[dict[str, Any]], Any]
    timer: OpenSearchTimer | Stages
    index: str
    max_records: int | None = None  # measured on the first records only (per-record)


def server_times(client: Any, index: str) -> tuple[float, float]:
    """OpenSearch's summed get and indexing milliseconds on ``index`` (primaries)."""
    stats = client.indices.stats(index=index, metric="get,indexing")["_all"]["primaries"]
    return float(stats["get"]["time_in_millis"]), float(stats["indexing"]["index_time_in_millis"])


def measure(contenders: list[Contender], workload: Workload, run: int, client: Any) -> list[Figure]:
    """Time every event per handler, the handlers taking turns batch by batch."""
    figures = [Figure(c.name, workload.name, workload.size, run) for c in contenders]
    before = [server_times(client, c.index) for c in contenders]
    for contender in contenders:
        contender.timer.reset()
    for event in workload.events:
        for contender, figure in zip(contenders, figures, strict=True):
            records = event["Records"]
            if contender.max_records is not None:
                count = min(len(records), contender.max_records - figure.records)
                if count <= 0:
                    continue
                records = records[:count]
            # As the Lambda runtime hands it over: parsed from the invocation's JSON text just
            # before the call (not timed), each handler its own copy. Dicts built by Python code
            # over time are scattered in memory and were measured up to 2x slower to walk.
            event = json.loads(json.dumps({"Records": records}))
            cpu_started, started = time.process_time(), time.perf_counter()
            contender.run(event)
            figure.wall_s += time.perf_counter() - started
            figure.cpu_s += time.process_time() - cpu_started
            figure.records += len(records)
    for contender, figure, (get_ms, index_ms) in zip(contenders, figures, before, strict=True):
        after = server_times(client, contender.index)
        figure.get_ms, figure.index_ms = after[0] - get_ms, after[1] - index_ms
        timer = contender.timer
        if isinstance(timer, Stages):
            figure.stages = timer.seconds()
            figure.bulk_s, figure.took_ms = figure.stages["_bulk"], timer.took_ms
            figure.bulk_calls = timer.bulk_calls
        else:
            figure.bulk_s, figure.took_ms = timer.bulk_s, timer.took_ms
            figure.bulk_calls = timer.bulk_calls
    return figures


def preload(workload: Workload, syncer_run: Callable[[dict[str, Any]], Any]) -> None:
    """Index the update workload's keys at revision 0 in every handler's index (not timed)."""
    from opensearchpy import helpers

    client, _, deserializer = _peer_clients()
    for start in range(0, len(workload.preload), PRELOAD_BATCH):
        records = workload.preload[start : start + PRELOAD_BATCH]
        syncer_run({"Records": records})
        actions = []
        for record in records:
            image = {
                k: deserializer.deserialize(v) for k, v in record["dynamodb"]["NewImage"].items()
            }
            image.pop("cost", None)
            doc_id = f"{image['pk']}|{image['sk']}"
            for index in (PEER_INDEX, PER_RECORD_INDEX):
                actions.append({"_index": index, "_id": doc_id, "_source": image})
        helpers.bulk(client, actions)


def forget_known_states() -> None:
    """syncer's container keeps no state of any document (revisions before known states have
    none to forget)."""
    from syncer import handler

    known = getattr(handler._get_container().sinks, "known", None)
    if known is not None:
        known.clear()


def print_stages(figures: list[Figure]) -> None:
    """Where syncer's wall time goes: ms per batch and share of wall time, per run."""
    print()
    print("where syncer's wall time goes (ms per batch, share of wall time; overlapping stages")
    print("each count in full, rest = wall time no stage covers)")
    columns = [*STAGES, "took", "rest"]
    print(
        f"{'run':>3} {'workload':>8} {'batch':>6} {'wall ms':>8} "
        + " ".join(f"{name:>13}" for name in columns)
    )
    for figure in figures:
        batches = figure.records / figure.batch_size
        wall = figure.wall_s
        values = {name: figure.stages[name] for name in [*STAGES, "took"]}
        values["rest"] = wall - figure.stages["covered"]
        cells = " ".join(
            f"{values[name] / batches * 1000:>6.1f} {values[name] / wall:>5.0%}" for name in columns
        )
        print(
            f"{figure.run:>3} {figure.workload:>8} {figure.batch_size:>6} "
            f"{wall / batches * 1000:>8.1f} {cells}"
        )


def _span(values: list[float], spec: str) -> str:
    return f"{format(min(values), spec)}-{format(max(values), spec)}"


def summarise(figures: list[Figure], sizes: list[int], workloads: list[str]) -> None:
    """Per workload and size: ranges over the runs of rates, ratios, took and decode shares."""
    print()
    print("summary: ranges over the interleaved runs (shared 2-core machine: figures are noisy)")
    for workload in workloads:
        for size in sizes:
            runs: dict[int, dict[str, Figure]] = {}
            for f in figures:
                if f.workload == workload and f.batch_size == size:
                    runs.setdefault(f.run, {})[f.handler] = f
            if not runs:
                continue
            ours = [r["syncer"] for r in runs.values()]
            vs_bulk = [r["syncer"].rate / r["helpers.bulk"].rate for r in runs.values()]
            vs_record = [r["syncer"].rate / r["per-record"].rate for r in runs.values()]
            took = [f.took_ms / 1000 / f.wall_s for f in ours]
            decode = [f.share("decode") for f in ours]
            mget = [f.share("_mget") for f in ours]
            batches = [f.records / f.batch_size for f in ours]
            get_ms = [f.get_ms / b for f, b in zip(ours, batches, strict=True)]
            index_ms = [f.index_ms / b for f, b in zip(ours, batches, strict=True)]
            peer = [r["helpers.bulk"] for r in runs.values()]
            peer_index_ms = [f.index_ms / (f.records / f.batch_size) for f in peer]
            print(
                f"{workload} batch {size}: syncer {_span([f.rate for f in ours], ',.0f')} records/s"
                f" | helpers.bulk {_span([f.rate for f in peer], ',.0f')}"
                f" | per-record {_span([r['per-record'].rate for r in runs.values()], ',.0f')}"
            )
            print(
                f"{workload} batch {size}: syncer = {_span(vs_bulk, '.2f')}x helpers.bulk "
                f"(target >= 1.5x), {_span(vs_record, '.1f')}x per-record (target >= 20x); "
                f"took {_span(took, '.0%')} of wall (target >= 55%), decode "
                f"{_span(decode, '.0%')} (target <= 8%), _mget {_span(mget, '.0%')}"
            )
            print(
                f"{workload} batch {size}: OpenSearch's own time per batch on syncer's index: get "
                f"{_span(get_ms, '.0f')} ms, indexing {_span(index_ms, '.0f')} ms; on "
                f"helpers.bulk's: indexing {_span(peer_index_ms, '.0f')} ms"
            )
            _print_what_is_left(workload, size, runs)
            print(
                f"RESULT end_to_end workload={workload} batch={size} runs={len(runs)} "
                f"syncer_rps_median={statistics.median(f.rate for f in ours):.0f} "
                f"vs_helpers_bulk_min={min(vs_bulk):.2f} vs_helpers_bulk_max={max(vs_bulk):.2f} "
                f"vs_per_record_min={min(vs_record):.1f} took_share_median="
                f"{statistics.median(took):.2f} decode_share_median={statistics.median(decode):.2f}"
            )


def _print_what_is_left(workload: str, size: int, runs: dict[int, dict[str, Figure]]) -> None:
    """What the services leave syncer's own CPU for 1.5x ``helpers.bulk``, per run.

    syncer's wall time is its CPU time plus the time it waits (OpenSearch, Redis, the network,
    all on this machine). At 1.5x, its wall may be ``helpers.bulk``'s / 1.5; taking its waiting
    as measured leaves that minus the waiting for its CPU.
    """
    allowed, used, waited, peer_cpu = [], [], [], []
    for figures in runs.values():
        ours, peer = figures["syncer"], figures["helpers.bulk"]
        batches = ours.records / ours.batch_size
        wait_ms = (ours.wall_s - ours.cpu_s) / batches * 1000
        peer_wall_ms = peer.wall_s / (peer.records / peer.batch_size) * 1000
        allowed.append(peer_wall_ms / 1.5 - wait_ms)
        used.append(ours.cpu_s / batches * 1000)
        waited.append(wait_ms)
        peer_cpu.append(peer.cpu_s / (peer.records / peer.batch_size) * 1000)
    print(
        f"{workload} batch {size}: per batch syncer waits {_span(waited, '.0f')} ms on the "
        f"services and uses {_span(used, '.0f')} ms of CPU; 1.5x helpers.bulk would allow it "
        f"{_span(allowed, '.0f')} ms of CPU (helpers.bulk itself used {_span(peer_cpu, '.0f')} ms)"
    )


def _create_peer_indices(config_path: Path) -> Any:
    from syncer.config import load_config
    from syncer.sinks.indices import load_template
    from syncer.sinks.search import make_client

    config = load_config(str(config_path))
    client = make_client(config.opensearch)
    template = load_template(config.tables[0])["template"]
    for index in (PEER_INDEX, PER_RECORD_INDEX):
        client.indices.delete(index=index, params={"ignore_unavailable": "true"})
        client.indices.create(
            index=index,
            body={"settings": template["settings"], "mappings": template["mappings"]},
        )
    return client


def _through_delay_proxy(rtt_ms: float) -> None:
    """Point every handler at OpenSearch through a relay adding ``rtt_ms`` per round trip."""
    import atexit
    import subprocess

    from bench import common

    proxy = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("delay_proxy.py")),
            "--target",
            OPENSEARCH_URL.split("//", 1)[1].rstrip("/"),
            "--delay-ms",
            str(rtt_ms / 2),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    atexit.register(proxy.kill)
    assert proxy.stdout is not None
    url = f"http://127.0.0.1:{int(proxy.stdout.readline())}"
    common.OPENSEARCH_URL = url
    globals()["OPENSEARCH_URL"] = url
    print(f"# OpenSearch reached through bench/delay_proxy.py: {rtt_ms} ms per round trip")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="1000", help="batch sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (fresh keys each)")
    parser.add_argument("--workloads", default="update,update-cold,insert")
    parser.add_argument("--quick", action="store_true", help="one run of one batch per size")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="reach OpenSearch through bench/delay_proxy.py with this round trip (all handlers)",
    )
    parser.add_argument(
        "--peer-gc",
        choices=("on", "paused"),
        default="paused",
        help="helpers.bulk's cycle collector: held off for each call, as syncer holds its own "
        "(default: the best version of the baseline), or on, as peer Lambdas usually run",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    workloads = args.workloads.split(",")
    runs = 1 if args.quick else args.runs
    if args.rtt_ms > 0:
        _through_delay_proxy(args.rtt_ms)
    _, config_path = start_bench(
        "End to end through lambda_handler, real OpenSearch and Redis", "e2e", TABLE, ALIAS
    )
    admin = _create_peer_indices(config_path)
    numbers = Numbers()
    syncer_run, stages, _ = syncer_handler(config_path)
    per_record, per_record_timer = per_record_handler()
    helpers_bulk, helpers_timer = helpers_bulk_handler(args.peer_gc == "paused")
    contenders = [
        Contender("syncer", syncer_run, stages, ALIAS),
        Contender("helpers.bulk", helpers_bulk, helpers_timer, PEER_INDEX),
        Contender(
            "per-record", per_record, per_record_timer, PER_RECORD_INDEX, PER_RECORD_MAX_RECORDS
        ),
    ]
    # Warm up every handler (clients, connections, index mappings) outside the figures.
    warm = build_workload("update", 50, 1, numbers, seed=0)
    preload(warm, syncer_run)
    for contender in contenders:
        contender.run(warm.events[0])

    figures: list[Figure] = []
    for run in range(1, runs + 1):
        for size in sizes:
            for name in workloads:
                batches = 1 if args.quick else BATCHES.get(size, 1)
                workload = build_workload(name, size, batches, numbers, seed=run * 100 + size)
                preload(workload, syncer_run)
                if name.endswith("-cold"):
                    forget_known_states()
                admin.indices.refresh(index=f"{ALIAS},{PEER_INDEX},{PER_RECORD_INDEX}")
                figures.extend(measure(contenders, workload, run, admin))

    print(
        f"records: {TABLE} items of ~1 KB; update = MODIFY of indexed items, "
        f"{REMOVE_SHARE:.0%} REMOVE, {REPEATED_SHARE:.0%} repeated keys; config {config_path}"
    )
    print(f"helpers.bulk's cycle collector: {args.peer_gc} (--peer-gc)")
    print(
        f"{'run':>3} {'workload':>8} {'batch':>6} {'handler':>13} {'records':>8} {'wall s':>7} "
        f"{'records/s':>10} {'cpu ms':>7} {'bulk HTTP':>9} {'took':>6} {'get ms':>7} {'index ms':>8}"
    )
    for figure in figures:
        shares = ""
        if figure.bulk_calls:
            shares = (
                f"{figure.bulk_s / figure.wall_s:>9.0%} "
                f"{figure.took_ms / 1000 / figure.wall_s:>6.0%}"
            )
        else:
            shares = f"{'':>9} {'':>6}"
        print(
            f"{figure.run:>3} {figure.workload:>8} {figure.batch_size:>6} {figure.handler:>13} "
            f"{figure.records:>8} {figure.wall_s:>7.2f} {figure.rate:>10,.0f} "
            f"{figure.cpu_s / (figure.records / figure.batch_size) * 1000:>7.1f} {shares} "
            f"{figure.get_ms:>7.0f} {figure.index_ms:>8.0f}"
        )
    print("bulk HTTP / took: shares of wall time (took = OpenSearch's own _bulk time);")
    print("cpu ms: the handler's CPU time per batch in this process (Python, the clients)")
    print("get ms / index ms: OpenSearch's own get and indexing time on the handler's index")
    print_stages([f for f in figures if f.stages])
    summarise(figures, sizes, workloads)
    teardown_index(config_path)  # the shared OpenSearch keeps none of the bench's documents
    for index in (PEER_INDEX, PER_RECORD_INDEX):
        admin.indices.delete(index=index, params={"ignore_unavailable": "true"})


if __name__ == "__main__":
    main()
