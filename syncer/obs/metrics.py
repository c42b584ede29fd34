"""Per-batch metrics: CloudWatch Embedded Metric Format in Lambda, Prometheus in ``syncer run``.

The EMF writer is a few lines of our own rather than aws-lambda-powertools or
aws-embedded-metrics: the batch's figures are already one flat dict, and a library import would
add to every cold start for no gain (``python -X importtime`` on the test VM, 2026-11-26:
``aws_lambda_powertools.metrics`` about 65 ms, ``aws_embedded_metrics`` about 300 ms; this
module needs nothing beyond orjson, which the pipeline imports anyway).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

import orjson

from syncer.core.outcome import BatchOutcome

NAMESPACE = "syncer"

# (metric name, unit, key in BatchOutcome.counts())
BATCH_METRICS = (
    ("RecordsIn", "Count", "records_in"),
    ("KeysAfterCoalescing", "Count", "keys"),
    ("Indexed", "Count", "indexed"),
    ("Deleted", "Count", "deleted"),
    ("SkippedStale", "Count", "skipped_stale"),
    ("Invalidated", "Count", "invalidated"),
    ("DeadLettered", "Count", "dead_lettered"),
    ("Failed", "Count", "failed"),
    ("Retries", "Count", "retries"),
    ("BreakerStateChanges", "Count", "breaker_changes"),
    ("IteratorAgeMax", "Milliseconds", "iterator_age_ms_max"),
    ("IteratorAgeMedian", "Milliseconds", "iterator_age_ms_median"),
    ("BulkLatency", "Milliseconds", "bulk_latency_ms"),
    ("FreshnessP50", "Milliseconds", "freshness_ms_p50"),
    ("FreshnessP99", "Milliseconds", "freshness_ms_p99"),
    ("KnownStatesUsed", "Count", "known_states_used"),
    ("KnownStatesStale", "Count", "known_states_stale"),
)


def emf_document(
    outcome: BatchOutcome, dimensions: dict[str, str], now_ms: int | None = None
) -> dict[str, Any]:
    """One EMF object: CloudWatch turns its fields into metrics without any API call."""
    counts = outcome.counts()
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": now_ms if now_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in BATCH_METRICS],
                }
            ],
        },
        **dimensions,
    }
    for name, _, key in BATCH_METRICS:
        document[name] = counts[key]
    return document


def write_emf(outcome: BatchOutcome, dimensions: dict[str, str], stream: IO[str]) -> None:
    """Print the EMF line on stdout, where Lambda sends it to CloudWatch Logs."""
    stream.write(orjson.dumps(emf_document(outcome, dimensions)).decode() + "\n")
    stream.flush()


class PrometheusMetrics:
    """The same figures as Prometheus counters, gauges and a bulk latency histogram."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.counters = {
            key: Counter(
                f"syncer_{key}",
                f"Total {key.replace('_', ' ')} over all batches",
                registry=self.registry,
            )
            for key in (
                "records_in",
                "keys",
                "indexed",
                "deleted",
                "skipped_stale",
                "invalidated",
                "dead_lettered",
                "failed",
                "retries",
                "breaker_changes",
                "known_states_used",
                "known_states_stale",
            )
        }
        self.batches = Counter("syncer_batches", "Batches processed", registry=self.registry)
        self.iterator_age = Gauge(
            "syncer_iterator_age_seconds",
            "Age of the oldest record of the last batch",
            registry=self.registry,
        )
        self.iterator_age_median = Gauge(
            "syncer_iterator_age_median_seconds",
            "Median record age of the last batch",
            registry=self.registry,
        )
        self.bulk_latency = Histogram(
            "syncer_bulk_latency_seconds",
            "Time in OpenSearch _bulk calls per batch",
            registry=self.registry,
        )
        # From ApproximateCreationDateTime to acknowledgement (search written, keys invalidated).
        self.freshness = {
            share: Gauge(
                f"syncer_freshness_{share}_seconds",
                f"{share} of the last batch: change made to change acknowledged",
                registry=self.registry,
            )
            for share in ("p50", "p99")
        }
        self.last_batch_at = Gauge(
            "syncer_last_batch_timestamp_seconds",
            "When the last batch finished",
            registry=self.registry,
        )

    def observe(self, outcome: BatchOutcome) -> None:
        counts = outcome.counts()
        for key, counter in self.counters.items():
            counter.inc(counts[key])
        self.batches.inc()
        self.iterator_age.set(outcome.iterator_age_ms_max / 1000)
        self.iterator_age_median.set(outcome.iterator_age_ms_median / 1000)
        self.bulk_latency.observe(outcome.bulk_latency_ms / 1000)
        self.freshness["p50"].set(outcome.freshness_ms_p50 / 1000)
        self.freshness["p99"].set(outcome.freshness_ms_p99 / 1000)
        self.last_batch_at.set(time.time())

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


def serve_http(
    metrics: PrometheusMetrics,
    health: Callable[[], tuple[bool, dict[str, Any]]],
    port: int,
    host: str = "127.0.0.1",
) -> ThreadingHTTPServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` (200 or 503 with a JSON reason), in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._answer(200, metrics.exposition(), "text/plain; version=0.0.4")
            elif self.path.startswith("/healthz"):
                healthy, detail = health()
                self._answer(
                    200 if healthy else 503,
                    orjson.dumps({"healthy": healthy, **detail}),
                    "application/json",
                )
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="syncer-metrics", daemon=True).start()
    return server
