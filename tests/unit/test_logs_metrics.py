"""Log lines and metrics carry a batch's figures, in their formats, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.core.outcome import BatchOutcome
from syncer.obs.logs import JsonFormatter, TextFormatter
from syncer.obs.metrics import BATCH_METRICS, NAMESPACE, PrometheusMetrics, emf_document, write_emf
from syncer.sinks.secrets import REDACTOR

OUTCOME = BatchOutcome(
    records_in=7,
    keys=5,
    indexed=3,
    deleted=1,
    skipped_stale=1,
    invalidated=9,
    dead_lettered=1,
    failed_sequence_numbers=("100", "200"),
    cache_keys=("product:p1",),
    retries=2,
    breaker_changes=1,
    iterator_age_ms_max=1500.04,
    iterator_age_ms_median=750.0,
    bulk_latency_ms=12.5,
)


def _record(
    message: str, *args: object, extra: dict[str, Any] | None = None, exc_info: Any = None
) -> logging.LogRecord:
    logger = logging.getLogger("syncer.pipeline")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, message, args, exc_info, extra=extra
    )


def _secret() -> str:
    """A secret registered with the shared REDACTOR and used by no other test."""
    secret = f"Pw-{uuid.uuid4().hex[:10]}"
    REDACTOR.add(secret)
    return secret


# --- JSON lines ---------------------------------------------------------------------------


def test_json_formatter_writes_one_object_with_the_batch_extra() -> None:
    """A record becomes one JSON line with time, level, logger, message and the batch counts."""
    # given the pipeline's "batch done" record
    record = _record("batch done", extra={"batch": OUTCOME.counts()})
    # when it is formatted as JSON
    line = JsonFormatter().format(record)
    # then it is a single line holding one object with the standard fields and the counts
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "syncer.pipeline"
    assert entry["message"] == "batch done"
    assert entry["time"].endswith("Z")
    assert entry["time"][10] == "T"
    assert entry["batch"] == OUTCOME.counts()


def test_json_formatter_keeps_internal_record_attributes_out() -> None:
    """Only the documented fields and extras appear, not LogRecord internals."""
    entry = json.loads(JsonFormatter().format(_record("hello %s", "world")))
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["message"] == "hello world"


def test_json_formatter_redacts_the_message_and_exception() -> None:
    """Secrets and URL passwords are masked in the message and in the exception text."""
    # given a registered secret in the message arguments and in an exception
    secret = _secret()
    try:
        raise ConnectionError(f"AUTH {secret} refused by redis://:{secret}@cache:6379")
    except ConnectionError:
        exc_info = sys.exc_info()
    record = _record(
        "cannot reach %s with %s", "http://admin:UrlOnly-9z@search:9200", secret, exc_info=exc_info
    )
    # when it is formatted
    entry = json.loads(JsonFormatter().format(record))
    # then neither the secret nor the URL's password is left
    line = json.dumps(entry)
    assert secret not in line
    assert "UrlOnly-9z" not in line
    assert entry["message"] == "cannot reach http://admin:***@search:9200 with ***"
    assert "ConnectionError: AUTH *** refused" in entry["exception"]


def test_json_formatter_redacts_extra_fields_too() -> None:
    """A secret in an ``extra`` field is masked like one in the message."""
    secret = _secret()
    record = _record("connect failed", extra={"target": f"redis://:{secret}@cache:6379/0"})
    assert secret not in JsonFormatter().format(record)


# --- text lines ---------------------------------------------------------------------------


def test_text_formatter_appends_the_batch_counts_as_key_value_pairs() -> None:
    """A record with a batch extra ends with key=value for every count, in order."""
    # given the pipeline's "batch done" record
    record = _record("batch done", extra={"batch": {"records_in": 7, "indexed": 3, "failed": 2}})
    # when it is formatted as text
    line = TextFormatter().format(record)
    # then the level, logger and message are followed by the counts
    assert line.endswith(" INFO syncer.pipeline: batch done records_in=7 indexed=3 failed=2")


def test_text_formatter_redacts() -> None:
    """Text lines mask registered secrets and URL passwords."""
    secret = _secret()
    record = _record("AUTH %s for rediss://u:UrlOnly-8y@cache:6380", secret)
    line = TextFormatter().format(record)
    assert secret not in line
    assert "UrlOnly-8y" not in line
    assert line.endswith("AUTH *** for rediss://u:***@cache:6380")


# --- CloudWatch EMF -----------------------------------------------------------------------


def test_emf_document_declares_every_metric_in_the_syncer_namespace() -> None:
    """The _aws directive names namespace syncer, the dimensions, and each metric with a unit."""
    document = emf_document(OUTCOME, {"Service": "syncer"}, now_ms=1_700_000_000_000)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert document["_aws"]["Timestamp"] == 1_700_000_000_000
    assert directive["Namespace"] == NAMESPACE == "syncer"
    assert directive["Dimensions"] == [["Service"]]
    assert document["Service"] == "syncer"
    declared = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert declared == {name: unit for name, unit, _ in BATCH_METRICS}
    assert set(declared.values()) <= {"Count", "Milliseconds"}


def test_emf_document_values_equal_the_outcome_counts() -> None:
    """Each declared metric is a top-level field whose value is the matching outcome count."""
    document = emf_document(OUTCOME, {"Service": "syncer"})
    counts = OUTCOME.counts()
    assert {name: document[name] for name, _, _ in BATCH_METRICS} == {
        name: counts[key] for name, _, key in BATCH_METRICS
    }
    assert document["RecordsIn"] == 7
    assert document["Failed"] == 2
    assert document["IteratorAgeMax"] == 1500.0


def test_write_emf_prints_one_json_line() -> None:
    """write_emf writes exactly one newline-terminated JSON object."""
    stream = io.StringIO()
    write_emf(OUTCOME, {"Service": "syncer"}, stream)
    text = stream.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert json.loads(text)["KeysAfterCoalescing"] == 5


# --- Prometheus ---------------------------------------------------------------------------


def _samples(metrics: PrometheusMetrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }


def test_prometheus_counters_add_up_observed_batches() -> None:
    """Observing two batches adds their counts to the *_total counters."""
    # given a fresh registry
    metrics = PrometheusMetrics()
    # when the same outcome is observed twice
    metrics.observe(OUTCOME)
    metrics.observe(OUTCOME)
    # then the exposition carries the sums
    samples = _samples(metrics)
    assert samples["syncer_records_in_total"] == 14
    assert samples["syncer_failed_total"] == 4
    assert samples["syncer_batches_total"] == 2
    assert b"syncer_records_in_total 14.0" in metrics.exposition()


def test_prometheus_gauges_and_histogram_are_in_seconds() -> None:
    """Iterator age and bulk latency are exposed in seconds, as Prometheus expects."""
    metrics = PrometheusMetrics()
    metrics.observe(OUTCOME)
    samples = _samples(metrics)
    assert samples["syncer_iterator_age_seconds"] == pytest.approx(1.50004)
    assert samples["syncer_iterator_age_median_seconds"] == pytest.approx(0.75)
    assert samples["syncer_bulk_latency_seconds_sum"] == pytest.approx(0.0125)
    assert samples["syncer_bulk_latency_seconds_count"] == 1
    assert samples["syncer_last_batch_timestamp_seconds"] > 0
