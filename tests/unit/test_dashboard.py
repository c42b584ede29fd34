"""template.yaml's dashboard graphs only metrics syncer emits, under the names and dimensions the
functions write them with, and docs/operations.md says what each graph answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from syncer import handler
from syncer.core.consistency import VIOLATION_KINDS
from syncer.core.outcome import BatchOutcome
from tests.unit.test_deploy_template import ROOT, template

__all__ = ["template"]  # the module-scoped fixture, shared

# (namespace, metric name, {dimension: value})
Metric = tuple[str, str, frozenset[tuple[str, str]]]
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9:]+)(?:\.([A-Za-z]+))?\}")
_EVENTS = ROOT / "tests" / "events"


def _body(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The dashboard body as JSON, each ${...} replaced by a stand-in; and the names it uses."""
    dashboard = template["Resources"]["SyncerDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    assert "Condition" not in dashboard
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str)
    used = {match.group(1) for match in _PLACEHOLDER.finditer(text)}
    # A number where the body uses a parameter as one (the alarm line), a string elsewhere.
    text = text.replace("${IteratorAgeAlarmSeconds}000", "300000")
    text = _PLACEHOLDER.sub(lambda match: "<" + match.group(0)[2:-1] + ">", text)
    body: dict[str, Any] = json.loads(text)
    return body, used


def _graphs(template: dict[str, Any]) -> list[dict[str, Any]]:
    body, _ = _body(template)
    return [widget["properties"] for widget in body["widgets"] if widget["type"] == "metric"]


def _graphed(properties: dict[str, Any]) -> list[tuple[Metric, dict[str, Any]]]:
    """Each metric row of a graph (expressions left out), with its options."""
    found = []
    for row in properties["metrics"]:
        if isinstance(row[0], dict):
            continue
        options = row[-1] if isinstance(row[-1], dict) else {}
        names = [part for part in row if isinstance(part, str)]
        assert "." not in names, "write each row out in full: the test reads no shorthand"
        namespace, metric, *pairs = names
        assert len(pairs) % 2 == 0, row
        dimensions = frozenset(zip(pairs[::2], pairs[1::2], strict=True))
        found.append(((namespace, metric, dimensions), options))
    return found


def _emf_metrics(lines: list[str]) -> set[Metric]:
    """The metrics CloudWatch makes of EMF lines: each metric under each of its dimension sets."""
    metrics: set[Metric] = set()
    for line in lines:
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = frozenset((name, document[name]) for name in dimension_set)
                for metric in directive["Metrics"]:
                    metrics.add((directive["Namespace"], metric["Name"], dimensions))
    return metrics


class _Scheduler:
    """Stands in for the SQS scheduler: the batch queued two checks, one failed to queue."""

    def schedule(self, outcome: BatchOutcome, deadline: object) -> dict[str, int]:
        return {"scheduled": 2, "schedule_failures": 1}


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> set[Metric]:
    """What the two Lambda handlers print as EMF for one batch and one check batch."""
    outcome = BatchOutcome(
        records_in=3,
        keys=2,
        indexed=1,
        deleted=1,
        skipped_stale=0,
        invalidated=2,
        dead_lettered=0,
        failed_sequence_numbers=(),
    )
    container = handler._Container(config=None, sinks=None, checks=_Scheduler())  # type: ignore[arg-type]
    monkeypatch.setattr(handler, "_container", container)
    monkeypatch.setattr(handler, "process_batch", lambda *args: outcome)
    monkeypatch.setenv("SYNCER_METRICS", "emf")
    counts = {"checks": 5, "superseded": 1, "errors": 0, "malformed": 0}
    counts |= {kind.value: 1 for kind in VIOLATION_KINDS}
    monkeypatch.setattr(
        "syncer.consistency.queue.handle_check_event",
        lambda *args: ({"batchItemFailures": []}, counts),
    )
    stream_event = json.loads((_EVENTS / "new_image.json").read_text(encoding="utf-8"))
    capsys.readouterr()
    handler.lambda_handler(stream_event, None)
    handler.consistency_check_handler({"Records": []}, None)
    lines = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return _emf_metrics(lines)


def test_the_fixture_sees_what_the_handlers_emit(emitted: set[Metric]) -> None:
    """Both handlers' EMF lines are read: batch figures, scheduling, checks, each kind."""
    names = {name for _, name, _ in emitted}
    assert {"RecordsIn", "FreshnessP99", "ConsistencyScheduled", "ConsistencyChecks"} <= names
    kinds = {dict(dims).get("kind") for _, name, dims in emitted if name == "ConsistencyViolations"}
    assert kinds == {None, *(kind.value for kind in VIOLATION_KINDS)}


def test_every_syncer_metric_on_the_dashboard_is_emitted(
    template: dict[str, Any], emitted: set[Metric]
) -> None:
    """Each graphed metric of namespace syncer exists with exactly those dimensions and values,
    so no graph stays empty because of a misspelt name or a dimension syncer does not write."""
    graphed = [metric for graph in _graphs(template) for metric, _ in _graphed(graph)]
    ours = [metric for metric in graphed if metric[0] == "syncer"]
    assert ours
    missing = [metric for metric in ours if metric not in emitted]
    assert missing == []


def test_aws_metrics_name_this_stacks_resources(template: dict[str, Any]) -> None:
    """Lambda and SQS graphs are filtered by the stack's own functions and queues."""
    resources = template["Resources"]
    for graph in _graphs(template):
        for (namespace, _, dimensions), _ in _graphed(graph):
            if namespace == "syncer":
                continue
            assert namespace in {"AWS/Lambda", "AWS/SQS"}
            ((name, value),) = dimensions
            reference = value.strip("<>").split(".")[0]
            expected = {"AWS/Lambda": ("FunctionName", "AWS::Serverless::Function")}.get(
                namespace, ("QueueName", "AWS::SQS::Queue")
            )
            assert (name, resources[reference]["Type"]) == expected, value
            assert "Condition" not in resources[reference]


def test_every_placeholder_is_a_parameter_resource_or_pseudo_parameter(
    template: dict[str, Any],
) -> None:
    """Fn::Sub can resolve each ${...} of the body."""
    _, used = _body(template)
    known = set(template["Parameters"]) | set(template["Resources"])
    assert {name for name in used if not name.startswith("AWS::")} <= known


def test_the_dashboard_shows_what_the_issue_asks(template: dict[str, Any]) -> None:
    """Freshness p50/p99, iterator age, records in, dead letters, breaker changes, checks and
    violations of every kind, and each function's own Lambda figures."""
    graphed = {metric for graph in _graphs(template) for metric, _ in _graphed(graph)}
    names = {name for _, name, _ in graphed}
    assert {
        "FreshnessP50",
        "FreshnessP99",
        "IteratorAge",
        "RecordsIn",
        "DeadLettered",
        "BreakerStateChanges",
        "ConsistencyChecks",
        "ConsistencyViolations",
    } <= names
    kinds = {
        dict(dims)["kind"]
        for _, name, dims in graphed
        if name == "ConsistencyViolations" and "kind" in dict(dims)
    }
    assert kinds == {kind.value for kind in VIOLATION_KINDS}
    functions = {
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and "Condition" not in resource
    }
    for function in functions:
        per_function = {
            name
            for namespace, name, dims in graphed
            if namespace == "AWS/Lambda" and dims == {("FunctionName", f"<{function}>")}
        }
        assert {"Invocations", "Errors", "Throttles", "Duration"} <= per_function, function


def test_every_kind_is_shown_as_nines(template: dict[str, Any]) -> None:
    """For each violation kind an expression turns its count and the checks into nines."""
    (graph,) = (g for g in _graphs(template) if "nines" in g["title"])
    ids = {options["id"]: metric for metric, options in _graphed(graph) if "id" in options}
    expressions = [row[0] for row in graph["metrics"] if isinstance(row[0], dict)]
    assert ids["checks"][1] == "ConsistencyChecks"
    for kind in VIOLATION_KINDS:
        (expression,) = (e for e in expressions if e["id"] == f"n_{kind.value}")
        assert ids[f"v_{kind.value}"][2] == {("Service", "syncer"), ("kind", kind.value)}
        assert f"v_{kind.value}" in expression["expression"]
        assert "checks" in expression["expression"]
        assert expression["expression"].startswith("LOG10(")
    for expression in expressions:
        referenced = set(re.findall(r"\b[a-z][a-z_]*\b", expression["expression"]))
        assert referenced <= set(ids), expression  # each id it uses is a metric of the graph


def test_graphs_fit_the_grid_without_overlapping(template: dict[str, Any]) -> None:
    """Widgets lie within CloudWatch's 24 columns and none covers another."""
    body, _ = _body(template)
    cells: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["x"] >= 0
        assert widget["x"] + widget["width"] <= 24
        covered = {
            (widget["x"] + dx, widget["y"] + dy)
            for dx in range(widget["width"])
            for dy in range(widget["height"])
        }
        assert not covered & cells, widget
        cells |= covered


def test_operations_md_explains_every_graph(template: dict[str, Any]) -> None:
    """docs/operations.md's Dashboard section has a row for each graph's title."""
    text = Path(ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Dashboard\n", 1)[1].split("\n## ", 1)[0]
    for graph in _graphs(template):
        assert f"| {graph['title']} |" in section, graph["title"]
