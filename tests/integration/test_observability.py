"""What operators see of a real batch: the EMF metrics line, JSON log lines and Prometheus."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.obs.logs import configure_logging
from syncer.obs.metrics import PrometheusMetrics, serve_http
from syncer.pipeline import process_batch
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

SECRET_NAME = "Sekret-Product-Name-42"


def _item(pk: str, category: str = "shoes", name: str = "Plain product") -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "name": {"S": name},
        "category": {"S": category},
        "price": {"N": "19.99"},
    }


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` that is a JSON object."""
    parsed = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


@pytest.fixture
def emf_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler's default: one EMF line per batch."""
    monkeypatch.delenv("SYNCER_METRICS", raising=False)


@pytest.mark.usefixtures("emf_on")
def test_handler_prints_one_emf_line_with_the_batch_figures(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each invocation writes one EMF object to stdout whose metrics match what the batch did."""
    # given three items, one of them changed twice (5 records, 3 keys)
    for pk in ("emf1", "emf2", "emf3"):
        stack.put(_item(pk))
    stack.put(_item("emf1", category="hats"))
    stack.put(_item("emf1", category="bags"))
    records = stack.new_records()
    capsys.readouterr()
    # when the batch is delivered through lambda_handler
    response = stack.invoke(records)
    # then stdout holds exactly one EMF object, in namespace syncer, with sensible values
    assert response == {"batchItemFailures": []}
    emf = [line for line in _json_lines(capsys.readouterr().out) if "_aws" in line]
    assert len(emf) == 1
    document = emf[0]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "syncer"
    assert document["RecordsIn"] == len(records) == 5
    assert document["KeysAfterCoalescing"] == 3
    assert document["Indexed"] == 3
    assert document["Failed"] == 0
    assert 0 <= document["IteratorAgeMax"] < 10 * 60 * 1000
    assert document["BulkLatency"] > 0


@pytest.mark.usefixtures("emf_on")
def test_json_logs_carry_the_batch_counts_and_no_item_content(
    stack: Stack, capsys: pytest.CaptureFixture[str], root_logger: logging.Logger
) -> None:
    """With JSON logging the batch ends in a "batch done" line with counts, never item values."""
    # given JSON lines on stdout and an item with a distinctive attribute value
    configure_logging(json_lines=True)
    stack.put(_item("log1", name=SECRET_NAME))
    stack.put(_item("log2"))
    records = stack.new_records()
    # when the batch is delivered
    stack.invoke(records)
    captured = capsys.readouterr()
    # then one "batch done" line reports the counts, and the item's content is nowhere
    lines = _json_lines(captured.out)
    (done,) = [line for line in lines if line.get("message") == "batch done"]
    assert done["level"] == "INFO"
    assert done["logger"] == "syncer.pipeline"
    assert done["batch"]["records_in"] == 2
    assert done["batch"]["indexed"] == 2
    assert done["batch"]["failed"] == 0
    assert SECRET_NAME not in captured.out + captured.err


@pytest.fixture
def metrics_server() -> Iterator[tuple[PrometheusMetrics, dict[str, bool], str]]:
    """A metrics server on a free loopback port whose health follows a flag."""
    state = {"healthy": True}
    metrics = PrometheusMetrics()
    server = serve_http(metrics, lambda: (state["healthy"], {"detail": "test"}), port=0)
    yield metrics, state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_prometheus_metrics_show_a_real_batch(
    stack: Stack, metrics_server: tuple[PrometheusMetrics, dict[str, bool], str]
) -> None:
    """After observing a processed batch, /metrics parses and carries the batch's totals."""
    # given a batch processed for real
    metrics, _, base = metrics_server
    for pk in ("prom1", "prom2", "prom3"):
        stack.put(_item(pk))
    records = stack.new_records()
    outcome = process_batch(records, stack.config, stack.sinks)
    # when its outcome is observed and /metrics is scraped
    metrics.observe(outcome)
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    # then the Prometheus text parses and the counters carry the batch
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert samples["syncer_records_in_total"] == len(records) == 3
    assert samples["syncer_indexed_total"] == outcome.indexed == 3
    assert samples["syncer_failed_total"] == 0
    assert samples["syncer_batches_total"] == 1
    assert samples["syncer_bulk_latency_seconds_count"] == 1
    assert samples["syncer_bulk_latency_seconds_sum"] > 0


def test_healthz_answers_200_when_healthy_and_503_when_not(
    metrics_server: tuple[PrometheusMetrics, dict[str, bool], str],
) -> None:
    """/healthz returns the health callable's verdict as 200 or 503 with a JSON body."""
    # given a healthy worker
    _, state, base = metrics_server
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
        healthy = (response.status, json.loads(response.read()))
    # when it turns unhealthy
    state["healthy"] = False
    with pytest.raises(urllib.error.HTTPError) as unhealthy:
        urllib.request.urlopen(f"{base}/healthz", timeout=5)
    # then the answer moves from 200 to 503, both with a JSON reason
    assert healthy == (200, {"healthy": True, "detail": "test"})
    assert unhealthy.value.code == 503
    assert unhealthy.value.headers["Content-Type"] == "application/json"
    assert json.loads(unhealthy.value.read()) == {"healthy": False, "detail": "test"}
