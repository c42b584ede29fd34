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
    """A payload naming no step fails the task with the steps it knows."""
    monkeypatch.setattr(reindex_handler, "_get_clients", lambda: (None, None, None))
    job = {
        "table": "t",
        "export_uri": "",
        "targets": {},
        "old_indices": {},
        "read_version": {},
        "item_count": 0,
        "files": 0,
    }
    with pytest.raises(ConfigError, match="prepare, load, segment or finish"):
        reindex_handler.lambda_handler({"step": "swap", "job": job}, None)
