"""template.yaml's reindex state machine: its definition parsed and checked against the handler."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from syncer import reindex_handler
from syncer.errors import ConfigError
from tests.unit.test_deploy_template import TEMPLATE, _CloudFormationLoader


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(encoding="utf-8"), _CloudFormationLoader)
    return loaded


def _machine(template: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = template["Resources"]["ReindexStateMachine"]
    assert resource["Type"] == "AWS::StepFunctions::StateMachine"
    assert resource["Condition"] == "WithReindex"
    return resource


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition["States"].items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _states(state["ItemProcessor"])


def test_every_transition_names_a_state_and_every_path_ends(template: dict[str, Any]) -> None:
    """Prepare, then a Choice between the files' and the segments' Maps, then Finish, the end."""
    definition = _machine(template)["Properties"]["Definition"]
    states = definition["States"]
    assert definition["StartAt"] == "Prepare"
    for _, state in _states(definition):
        targets = [state.get("Next"), state.get("Default")]
        targets += [choice["Next"] for choice in state.get("Choices", [])]
        assert state.get("End") or any(targets)
    assert states["Prepare"]["Next"] == "Source"
    assert {c["Next"] for c in states["Source"]["Choices"]} | {states["Source"]["Default"]} == {
        "LoadFiles",
        "ScanSegments",
    }
    assert states["LoadFiles"]["Next"] == states["ScanSegments"]["Next"] == "Finish"
    assert states["Finish"]["End"] is True


def test_export_files_are_a_distributed_map_over_the_jsonl_manifest(
    template: dict[str, Any],
) -> None:
    """ItemReader s3:getObject JSONL, concurrency from a parameter, no failure tolerated, results in S3."""
    load = _machine(template)["Properties"]["Definition"]["States"]["LoadFiles"]
    assert load["Type"] == "Map"
    assert load["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert load["ItemReader"]["ReaderConfig"] == {"InputType": "JSONL"}
    assert load["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert load["ToleratedFailurePercentage"] == 0
    assert load["MaxConcurrencyPath"] == "$.prepared.body.max_concurrency"
    assert load["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    machine = _machine(template)["Properties"]
    assert machine["DefinitionSubstitutions"]["MaxConcurrency"] == {"Ref": "ReindexMaxConcurrency"}
    prepare = machine["Definition"]["States"]["Prepare"]["Parameters"]["Payload"]
    assert prepare["max_concurrency"] == "${MaxConcurrency}"


def test_every_placeholder_is_substituted(template: dict[str, Any]) -> None:
    """Each ${Name} in the definition has a DefinitionSubstitutions entry."""
    properties = _machine(template)["Properties"]
    used = set(re.findall(r"\$\{(\w+)\}", str(properties["Definition"])))
    assert used == set(properties["DefinitionSubstitutions"])


def test_each_task_runs_a_step_the_second_handler_knows(template: dict[str, Any]) -> None:
    """Every Lambda task invokes the reindex function with a step reindex_handler dispatches."""
    resources = template["Resources"]
    handler = resources["ReindexFunction"]["Properties"]["Handler"]
    assert handler == "syncer.reindex_handler.lambda_handler"
    steps = set()
    for _, state in _states(_machine(template)["Properties"]["Definition"]):
        if state["Type"] == "Task":
            assert state["Resource"] == "arn:aws:states:::lambda:invoke"
            assert state["Parameters"]["FunctionName"] == "${ReindexFunctionArn}"
            payload = state["Parameters"].get("Payload")
            steps.add(payload["step"] if payload else None)
        for key in ("ItemSelector",):
            if key in state:
                steps.add(state[key]["step"])
    assert steps == {"prepare", "finish", None, "load", "segment"}  # None: the item passed on


def test_an_unknown_step_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload naming no known step fails the task with the steps it knows, before any
    client is made (defect 12: it was a KeyError 'table')."""
    monkeypatch.setattr(reindex_handler, "_get_clients", _no_clients)
    with pytest.raises(ConfigError, match='"step" is one of prepare, load, segment, finish'):
        reindex_handler.lambda_handler({"step": "swap", "job": {"id": "t-1", "epoch": 1}}, None)


def _no_clients() -> Any:
    raise AssertionError("a bad event must be refused before any client is made")


@pytest.mark.parametrize(
    ("execution_input", "default", "named"),
    [
        ({"table": "t", "segments": 2, "max_concurrency": 0}, None, '"max_concurrency"'),
        ({"table": "t", "segments": 2, "max_concurrency": "abc"}, None, '"max_concurrency"'),
        ({"table": "t", "segments": 2, "max_concurrency": True}, None, '"max_concurrency"'),
        ({"table": "t", "segments": 2}, "0", "ReindexMaxConcurrency"),
        ({"segments": 2}, None, '"table"'),
        ({"table": "", "segments": 2}, None, '"table"'),
        ({"table": "t"}, None, '"export_uri".*"segments"'),
        ({"table": "t", "segments": 2, "export_uri": "s3://b/p"}, None, "exactly one"),
        ({"table": "t", "segments": 0}, None, '"segments"'),
        ({"table": "t", "segments": "4"}, None, '"segments"'),
        ({"table": "t", "export_uri": "/tmp/export"}, None, '"export_uri"'),
        ({"table": "t", "segments": 2, "segmnets": 3}, None, "unknown field.*segmnets"),
        ("catalog", None, "an object"),
    ],
)
def test_the_execution_input_is_checked_field_by_field(
    execution_input: Any, default: Any, named: str
) -> None:
    """Defect 12: every bad field is refused by name (0 was silently 4, "abc" a raw
    ValueError, a missing table "segments must be at least 1")."""
    with pytest.raises(ConfigError, match=named):
        reindex_handler.check_prepare_input(execution_input, default)


def test_good_input_is_kept_and_the_template_default_applies() -> None:
    """The template passes ReindexMaxConcurrency as text; the input's own value wins."""
    checked = reindex_handler.check_prepare_input({"table": "t", "segments": 3}, "7")
    assert checked == {"table": "t", "segments": 3, "max_concurrency": 7}
    given = {"table": "t", "export_uri": "s3://b/p", "max_concurrency": 2}
    assert reindex_handler.check_prepare_input(given, "7")["max_concurrency"] == 2


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"step": "finish"}, '"job"'),
        ({"step": "load", "job": {"id": "t-1"}}, "job.epoch"),
        ({"step": "finish", "job": "t-1"}, '"job"'),
    ],
)
def test_a_step_without_its_job_is_refused_by_name(
    event: dict[str, Any], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every later step needs the job's id and epoch that prepare returned."""
    monkeypatch.setattr(reindex_handler, "_get_clients", lambda: (None, None, None))
    with pytest.raises(ConfigError, match=named):
        reindex_handler.lambda_handler(event, None)
