"""The figures of consistency checks: a log line per violation, EMF lines, Prometheus counters."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

import orjson

from syncer.core.consistency import VIOLATION_KINDS, CheckKind, CheckResult
from syncer.obs.metrics import NAMESPACE

log = logging.getLogger("syncer.consistency")


def log_violations(results: Sequence[CheckResult]) -> None:
    """One warning per violation: the key, the version syncer wrote, the one found, the kind."""
    for result in results:
        sample = result.sample
        for kind in result.violations:
            indexed = result.indexed_version
            log.warning(
                "consistency violation %s: table %s key %s (index %s)",
                kind.value,
                sample.table,
                sample.document_id,
                sample.index,
                extra={
                    "kind": kind.value,
                    "table": sample.table,
                    "key": sample.document_id,
                    "index": sample.index,
                    "written_version": sample.version.to_meta(),
                    "indexed_version": indexed.to_meta() if indexed is not None else None,
                    "stale_cache_keys": list(result.stale_cache_keys),
                },
            )


def tally(results: Sequence[CheckResult]) -> dict[str, int]:
    """Checks, superseded, and violations by kind (every kind, zeros included)."""
    kinds = Counter(kind for result in results for kind in result.violations)
    return {
        "checks": len(results),
        "superseded": sum(1 for r in results if r.index is CheckKind.SUPERSEDED),
        **{kind.value: kinds.get(kind, 0) for kind in VIOLATION_KINDS},
    }


def _emf(
    metrics: dict[str, int],
    dimensions: dict[str, str],
    at_ms: int,
    rollup: list[str] | None = None,
) -> dict[str, Any]:
    """One EMF object; ``rollup`` is a second dimension set the values are also counted under."""
    return {
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions), *([rollup] if rollup is not None else [])],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in metrics],
                }
            ],
        },
        **dimensions,
        **metrics,
    }


def emf_documents(
    counts: dict[str, int], dimensions: dict[str, str], now_ms: int | None = None
) -> list[dict[str, Any]]:
    """EMF objects: ``ConsistencyChecks`` (and errors), then ``ConsistencyViolations`` per kind.

    Every kind is written, zeros too, so an alarm on a kind sees data points, not gaps. Each
    kind's count is also filed without ``kind``: the sum over kinds, which template.yaml's
    alarm watches.
    """
    at = int(time.time() * 1000) if now_ms is None else now_ms
    head = {
        "ConsistencyChecks": counts.get("checks", 0),
        "ConsistencySuperseded": counts.get("superseded", 0),
        "ConsistencyCheckErrors": counts.get("errors", 0),
        "ConsistencyMalformed": counts.get("malformed", 0),
    }
    return [
        _emf(head, dimensions, at),
        *(
            _emf(
                {"ConsistencyViolations": counts.get(kind.value, 0)},
                {**dimensions, "kind": kind.value},
                at,
                sorted(dimensions),
            )
            for kind in VIOLATION_KINDS
        ),
    ]


def schedule_emf_document(
    counts: dict[str, int], dimensions: dict[str, str], now_ms: int | None = None
) -> dict[str, Any]:
    """The stream function's EMF object for the checks one batch queued, and failed to."""
    at = int(time.time() * 1000) if now_ms is None else now_ms
    metrics = {
        "ConsistencyScheduled": counts.get("scheduled", 0),
        "ConsistencyScheduleFailures": counts.get("schedule_failures", 0),
    }
    return _emf(metrics, dimensions, at)


def write_emf(documents: Sequence[dict[str, Any]], stream: IO[str]) -> None:
    """Print EMF lines on stdout, where Lambda sends them to CloudWatch Logs."""
    for document in documents:
        stream.write(orjson.dumps(document).decode() + "\n")
    stream.flush()


class ConsistencyMetrics:
    """``syncer_consistency_checks_total`` and ``syncer_consistency_violations_total{kind}``.

    Registered in the registry that ``syncer run``'s ``/metrics`` serves.
    """

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter as PromCounter

        self.checks = PromCounter(
            "syncer_consistency_checks", "Consistency checks done", registry=registry
        )
        self.violations = PromCounter(
            "syncer_consistency_violations",
            "Consistency violations found, by kind",
            ["kind"],
            registry=registry,
        )
        self.superseded = PromCounter(
            "syncer_consistency_superseded",
            "Checks whose key changed again before the check (not violations)",
            registry=registry,
        )
        self.errors = PromCounter(
            "syncer_consistency_check_errors",
            "Sampled keys whose check could not be done (a downstream failed)",
            registry=registry,
        )
        self.dropped = PromCounter(
            "syncer_consistency_dropped",
            "Written keys not checked: over [consistency] max_pending, sampling failed, or the "
            "run stopped before they were due",
            registry=registry,
        )
        for kind in VIOLATION_KINDS:  # every kind exported from the start, at 0
            self.violations.labels(kind=kind.value)

    def observe(self, counts: dict[str, int]) -> None:
        self.checks.inc(counts.get("checks", 0))
        self.superseded.inc(counts.get("superseded", 0))
        self.errors.inc(counts.get("errors", 0))
        self.dropped.inc(counts.get("dropped", 0) + counts.get("schedule_failures", 0))
        for kind in VIOLATION_KINDS:
            self.violations.labels(kind=kind.value).inc(counts.get(kind.value, 0))
