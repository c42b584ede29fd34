"""End to end through ``syncer.handler.lambda_handler`` on the real OpenSearch and Redis.

Batches of 100, 1,000 and 10,000 INSERT records of distinct catalog items (every record is a
write) in the exact Lambda event format, against two handlers written the way peers write them:

* (a) per record: ``TypeDeserializer``, one ``index`` (or ``delete``) call and one Redis ``DEL``
  per record, as the AWS samples do;
* (b) opensearch-py ``helpers.bulk`` with its defaults (500 actions per request), then one
  Redis ``DEL`` per item key;

both on their own index with the same template and the same cache keys. For syncer it also
reports where the wall time goes, stage by stage (``StageClock``): decode, coalesce, plan, cache
keys and the ``_bulk`` body (CPU), the reindex-alias ``HEAD``, the ``_mget`` that reads indexed
versions, the ``_bulk`` HTTP calls with OpenSearch's own ``took`` for them (the limit to
approach), the Redis invalidation, and the rest (response parsing, settling, Python). Stages
that overlap in time (a ``HEAD`` sent alongside the ``_mget``) are each counted in full; "rest"
is the wall time no stage covers. Wall time per batch, records/s = records / wall time. The
handlers take turns batch by batch.

    .venv/bin/python bench/end_to_end.py [--sizes 100,1000,10000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CACHE_KEYS,
    OPENSEARCH_URL,
    REDIS_URL,
    insert_records,
    start_bench,
    teardown_index,
)

TABLE = "bench_e2e"
ALIAS = "bench-e2e"
PEER_INDEX = "bench-e2e-peer"
# How many batches of each size each handler gets: enough records for a steady figure, few
# enough that the per-record baseline finishes (it makes two round trips per record).
BATCHES = {100: 30, 1000: 8, 10000: 2}
PER_RECORD_MAX_RECORDS = 2000  # (a) at 10,000 would take minutes: measured on 2,000 records


class KeyCounter:
    """Hands out item numbers never used before in this run: every record is a new document."""

    def __init__(self) -> None:
        self.next = int(time.time()) % 100_000 * 1_000_000

    def take(self, count: int) -> int:
        first = self.next
        self.next += count
        return first


@dataclass
class OpenSearchTimer:
    """Wraps a client's ``bulk`` and ``mget`` to time the HTTP calls and sum ``took``."""

    bulk_s: float = 0.0
    took_ms: float = 0.0
    mget_s: float = 0.0
    bulk_calls: int = 0
    actions: int = 0
    originals: dict[str, Any] = field(default_factory=dict)

    def install(self, client: Any) -> None:
        bulk, mget = client.bulk, client.mget

        def timed_bulk(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            response = bulk(*args, **kwargs)
            self.bulk_s += time.perf_counter() - started
            self.took_ms += response.get("took", 0)
            self.bulk_calls += 1
            self.actions += len(response.get("items", []))
            return response

        def timed_mget(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            response = mget(*args, **kwargs)
            self.mget_s += time.perf_counter() - started
            return response

        client.bulk, client.mget = timed_bulk, timed_mget

    def reset(self) -> None:
        self.bulk_s = self.took_ms = self.mget_s = 0.0
        self.bulk_calls = self.actions = 0


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
    in, so stages that overlap are visible as such. Wrapping costs two ``perf_counter`` calls
    per call.
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

        def run(*args: Any, **kwargs: Any) -> Any:
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

    def install(self, client: Any) -> None:
        from syncer import pipeline
        from syncer.sinks import cache
        from syncer.sinks.search import writes as search_writes

        pipeline.decode_records = self.timed("decode", pipeline.decode_records)
        pipeline.coalesce_latest_per_key = self.timed("coalesce", pipeline.coalesce_latest_per_key)
        pipeline.plan_write = self.timed("plan", pipeline.plan_write)
        pipeline.plan_cache_keys = self.timed("keys", pipeline.plan_cache_keys)
        cache.invalidate = self.timed("redis", cache.invalidate)
        search_writes.bulk_chunks = self.timed_chunks(search_writes.bulk_chunks)
        client.indices.exists_alias = self.timed("HEAD", client.indices.exists_alias)
        client.mget = self.timed("_mget", client.mget)
        bulk = self.timed("_bulk", client.bulk)

        def counted_bulk(*args: Any, **kwargs: Any) -> Any:
            response = bulk(*args, **kwargs)
            self.active.took_ms += response.get("took", 0)
            self.active.bulk_calls += 1
            return response

        client.bulk = counted_bulk


class InlinePool:
    """An executor that runs each call at once on the caller's thread: the HEAD before the
    ``_mget``, as ``apply_writes`` sent them before they overlapped (up to a71be72)."""

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(function(*args))
        except Exception as error:  # noqa: BLE001 - raised again by future.result()
            future.set_exception(error)
        return future


# ---------------------------------------------------------------------------------------------
# The handlers
# ---------------------------------------------------------------------------------------------
def syncer_handlers(
    config_path: Path,
) -> list[tuple[str, Callable[[dict[str, Any]], Any], Stages]]:
    """syncer as it is, and syncer with its HEAD sent before the ``_mget`` (the "before").

    Both run the same code through the same ``lambda_handler``, clients and connections; the
    second only swaps the pool ``apply_writes`` sends its HEADs from for one that runs them at
    once, in sequence, so the two compare within one run.
    """
    os.environ["SYNCER_CONFIG"] = str(config_path)
    os.environ["SYNCER_METRICS"] = "off"  # no EMF line on stdout per batch
    from syncer import handler
    from syncer.sinks.search import targets as search_targets

    handler.reset_container()
    container = handler._get_container()
    clock = StageClock()
    clock.install(container.sinks.opensearch)
    overlapped, sequential = Stages(), Stages()
    side_requests = search_targets._side_requests

    def run(event: dict[str, Any]) -> Any:
        clock.active = overlapped
        response = handler.lambda_handler(event, None)
        assert response == {"batchItemFailures": []}, response
        return response

    def run_sequential(event: dict[str, Any]) -> Any:
        clock.active = sequential
        search_targets._side_requests = InlinePool  # type: ignore[assignment]
        try:
            response = handler.lambda_handler(event, None)
        finally:
            search_targets._side_requests = side_requests
        assert response == {"batchItemFailures": []}, response
        return response

    return [("syncer", run, overlapped), ("syncer, HEAD first", run_sequential, sequential)]


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
        with contextlib.suppress(KeyError):  # a template's attribute is absent
            keys.append(template.format(**image))
    return keys


def per_record_handler() -> tuple[Callable[[dict[str, Any]], Any], OpenSearchTimer]:
    """(a) The AWS-sample shape: one index/delete call and one Redis DEL per record."""
    client, cache, deserializer = _peer_clients()

    def run(event: dict[str, Any]) -> None:
        for record in event["Records"]:
            ddb = record["dynamodb"]
            keys = {k: deserializer.deserialize(v) for k, v in ddb["Keys"].items()}
            doc_id = "|".join(str(keys[name]) for name in sorted(keys))
            if record["eventName"] == "REMOVE":
                client.delete(index=PEER_INDEX, id=doc_id, params={"ignore": "404"})
                image = keys
            else:
                image = {k: deserializer.deserialize(v) for k, v in ddb["NewImage"].items()}
                image.pop("cost", None)
                client.index(index=PEER_INDEX, id=doc_id, body=image)
            cache.delete(*_peer_cache_keys(image))

    return run, OpenSearchTimer()


def helpers_bulk_handler() -> tuple[Callable[[dict[str, Any]], Any], OpenSearchTimer]:
    """(b) ``helpers.bulk`` with its defaults, then one Redis DEL per item key."""
    from opensearchpy import helpers

    client, cache, deserializer = _peer_clients()
    timer = OpenSearchTimer()
    timer.install(client)

    def run(event: dict[str, Any]) -> None:
        actions = []
        images = []
        for record in event["Records"]:
            ddb = record["dynamodb"]
            keys = {k: deserializer.deserialize(v) for k, v in ddb["Keys"].items()}
            doc_id = "|".join(str(keys[name]) for name in sorted(keys))
            if record["eventName"] == "REMOVE":
                actions.append({"_op_type": "delete", "_index": PEER_INDEX, "_id": doc_id})
                images.append(keys)
            else:
                image = {k: deserializer.deserialize(v) for k, v in ddb["NewImage"].items()}
                image.pop("cost", None)
                actions.append({"_index": PEER_INDEX, "_id": doc_id, "_source": image})
                images.append(image)
        success, errors = helpers.bulk(client, actions)
        assert success == len(actions), errors
        for image in images:
            cache.delete(*_peer_cache_keys(image))

    return run, timer


# ---------------------------------------------------------------------------------------------
@dataclass
class Figure:
    handler: str
    batch_size: int
    records: int = 0
    wall_s: float = 0.0
    bulk_s: float = 0.0
    took_ms: float = 0.0
    mget_s: float = 0.0
    bulk_calls: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # syncer's, from StageClock

    @property
    def rate(self) -> float:
        return self.records / self.wall_s


@dataclass
class Contender:
    name: str
    run: Callable[[dict[str, Any]], Any]
    timer: OpenSearchTimer | Stages
    max_records: int | None = None  # measured on a slice of the batches (per-record)


def measure(
    contenders: list[Contender], table: str, size: int, batches: int, keys: KeyCounter
) -> list[Figure]:
    """Time ``batches`` events of ``size`` fresh records per handler, the handlers taking turns.

    Events are built before timing. Taking turns batch by batch spreads the shared machine's
    busy moments over every handler, so the ratios compare like with like.
    """
    figures = [Figure(c.name, size) for c in contenders]
    for contender in contenders:
        contender.timer.reset()
    for _ in range(batches):
        for contender, figure in zip(contenders, figures, strict=True):
            count = size
            if contender.max_records is not None:
                count = min(size, contender.max_records - figure.records)
                if count <= 0:
                    continue
            event = {"Records": insert_records(table, count, keys.take(count))}
            started = time.perf_counter()
            contender.run(event)
            figure.wall_s += time.perf_counter() - started
            figure.records += count
    for contender, figure in zip(contenders, figures, strict=True):
        timer = contender.timer
        if isinstance(timer, Stages):
            figure.stages = timer.seconds()
            figure.bulk_s, figure.took_ms = figure.stages["_bulk"], timer.took_ms
            figure.mget_s, figure.bulk_calls = figure.stages["_mget"], timer.bulk_calls
        else:
            figure.bulk_s, figure.took_ms = timer.bulk_s, timer.took_ms
            figure.mget_s, figure.bulk_calls = timer.mget_s, timer.bulk_calls
    return figures


def print_stages(figures: list[Figure]) -> None:
    """Where syncer's wall time goes per batch size: ms per batch and share of wall time."""
    print()
    print("where syncer's wall time goes (ms per batch, share of wall time; overlapping stages")
    print("each count in full, rest = wall time no stage covers)")
    columns = [*STAGES, "took", "rest"]
    print(
        f"{'batch':>6} {'handler':>18} {'wall ms':>8} "
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
        print(f"{figure.batch_size:>6} {figure.handler:>18} {wall / batches * 1000:>8.1f} {cells}")
    for figure in figures:
        wall = figure.wall_s
        values = {name: figure.stages[name] for name in [*STAGES, "took"]}
        values["rest"] = wall - figure.stages["covered"]
        shares = " ".join(f"{name}={values[name] / wall:.3f}" for name in columns)
        handler = figure.handler.replace(", ", "_").replace(" ", "_")
        print(
            f"RESULT end_to_end_stages batch={figure.batch_size} handler={handler} "
            f"wall_ms={wall / (figure.records / figure.batch_size) * 1000:.1f} {shares}"
        )


def _setup_peer_index(config_path: Path) -> None:
    from syncer.config import load_config
    from syncer.sinks.indices import load_template
    from syncer.sinks.search import make_client

    config = load_config(str(config_path))
    client = make_client(config.opensearch)
    template = load_template(config.tables[0])["template"]
    client.indices.delete(index=PEER_INDEX, params={"ignore_unavailable": "true"})
    client.indices.create(
        index=PEER_INDEX, body={"settings": template["settings"], "mappings": template["mappings"]}
    )


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
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--quick", action="store_true", help="one batch per size (smoke run)")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="reach OpenSearch through bench/delay_proxy.py with this round trip (all handlers)",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.rtt_ms > 0:
        _through_delay_proxy(args.rtt_ms)
    _, config_path = start_bench(
        "End to end through lambda_handler, real OpenSearch and Redis", "e2e", TABLE, ALIAS
    )
    _setup_peer_index(config_path)
    keys = KeyCounter()
    ours = syncer_handlers(config_path)
    per_record, per_record_timer = per_record_handler()
    helpers_bulk, helpers_timer = helpers_bulk_handler()
    # Warm up every handler (clients, connections, index mappings) outside the figures.
    for run in (*(run for _, run, _ in ours), per_record, helpers_bulk):
        run({"Records": insert_records(TABLE, 50, keys.take(50))})

    figures: list[Figure] = []
    for size in sizes:
        batches = 1 if args.quick else BATCHES.get(size, 2)
        contenders = [
            *(Contender(name, run, stages) for name, run, stages in ours),
            Contender("helpers.bulk", helpers_bulk, helpers_timer),
            Contender("per-record", per_record, per_record_timer, PER_RECORD_MAX_RECORDS),
        ]
        figures.extend(measure(contenders, TABLE, size, batches, keys))

    print(f"records: {TABLE} items of ~1 KB, INSERT, unique keys; config {config_path}")
    print(
        f"{'batch':>6} {'handler':>17} {'records':>8} {'wall s':>7} {'records/s':>10} "
        f"{'bulk HTTP':>9} {'bulk took':>9} {'_mget':>6} {'rest':>6}"
    )
    for figure in figures:
        shares = ""
        if figure.bulk_calls:
            rest = figure.wall_s - figure.bulk_s - figure.mget_s
            shares = (
                f"{figure.bulk_s / figure.wall_s:>9.0%} {figure.took_ms / 1000 / figure.wall_s:>9.0%} "
                f"{figure.mget_s / figure.wall_s:>6.0%} {rest / figure.wall_s:>6.0%}"
            )
        print(
            f"{figure.batch_size:>6} {figure.handler:>17} {figure.records:>8} "
            f"{figure.wall_s:>7.2f} {figure.rate:>10,.0f} {shares}"
        )
    print(
        "bulk HTTP / bulk took / _mget / rest: shares of wall time (took = OpenSearch's own time)"
    )
    print_stages([f for f in figures if f.stages])
    for size in sizes:
        by_name = {f.handler: f for f in figures if f.batch_size == size}
        ours_rate = by_name["syncer"].rate
        line = (
            f"batch {size}: syncer {ours_rate:,.0f} records/s = "
            f"{ours_rate / by_name['per-record'].rate:.1f}x per-record (target >= 20x at 1,000), "
            f"{ours_rate / by_name['helpers.bulk'].rate:.2f}x helpers.bulk (target >= 1.5x)"
        )
        print(line)
        before = by_name["syncer, HEAD first"]
        print(
            f"batch {size}: HEAD alongside the _mget {ours_rate:,.0f} records/s vs HEAD first "
            f"{before.rate:,.0f} ({ours_rate / before.rate:.2f}x)"
        )
        ours_figure = by_name["syncer"]
        took_share = ours_figure.took_ms / 1000 / ours_figure.wall_s
        ceiling = ours_figure.records / (ours_figure.took_ms / 1000)
        print(
            f"batch {size}: OpenSearch's own _bulk work (took) is {took_share:.0%} of syncer's "
            f"wall time: with all else free, at most {ceiling:,.0f} records/s = "
            f"{ceiling / by_name['per-record'].rate:.1f}x per-record"
        )
        print(
            f"RESULT end_to_end batch={size} syncer_rps={ours_rate:.0f} "
            f"per_record_rps={by_name['per-record'].rate:.0f} "
            f"helpers_bulk_rps={by_name['helpers.bulk'].rate:.0f} "
            f"took_share={by_name['syncer'].took_ms / 1000 / by_name['syncer'].wall_s:.2f}"
        )
    teardown_index(config_path)  # the shared OpenSearch keeps none of the bench's documents
    helpers_client = _peer_clients()[0]
    helpers_client.indices.delete(index=PEER_INDEX, params={"ignore_unavailable": "true"})


if __name__ == "__main__":
    main()
