"""template.yaml deploys the consistency checker: its queue, function, role and alarm."""

from __future__ import annotations

import importlib
import tomllib
from typing import Any

from syncer.config import parse_config
from tests.unit.test_deploy_template import ROOT, _as_list, template

__all__ = ["template"]  # the module-scoped fixture, shared


def _resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][name]["Properties"]
    return properties


def test_the_stream_function_is_told_the_check_queue(template: dict[str, Any]) -> None:
    """SYNCER_CONSISTENCY_QUEUE_URL names the stack's queue, which the config then uses."""
    variables = _resource(template, "SyncerFunction")["Environment"]["Variables"]
    assert variables["SYNCER_CONSISTENCY_QUEUE_URL"] == {"Ref": "ConsistencyCheckQueue"}
    raw = tomllib.loads((ROOT / "deploy" / "syncer.lambda.toml").read_text(encoding="utf-8"))
    environ = {"SYNCER_CONSISTENCY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/checks"}
    consistency = parse_config(raw, environ).consistency
    assert consistency.queue_url == environ["SYNCER_CONSISTENCY_QUEUE_URL"]
    assert consistency.enabled(in_lambda=True)


def test_the_checker_handles_the_queue_and_reports_failures(template: dict[str, Any]) -> None:
    """The checker runs consistency_check_handler on the queue with ReportBatchItemFailures."""
    checker = _resource(template, "ConsistencyCheckerFunction")
    module_name, _, attribute = checker["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module_name), attribute))
    (event,) = checker["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ConsistencyCheckQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = _resource(template, "ConsistencyCheckQueue")
    assert queue["VisibilityTimeout"] >= 6 * checker["Timeout"]  # AWS's advice for SQS sources


def test_the_checker_role_only_reads(template: dict[str, Any]) -> None:
    """The checker's role reads items, documents and its queue; it writes nothing but logs."""
    (policy,) = _resource(template, "ConsistencyCheckerRole")["Policies"]
    actions = {
        action
        for statement in policy["PolicyDocument"]["Statement"]
        for action in _as_list(
            statement["Fn::If"][1]["Action"] if "Fn::If" in statement else statement["Action"]
        )
    }
    assert actions == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "dynamodb:BatchGetItem",
        "es:ESHttpPost",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",  # the queue's and the environment's keys, when given
    }


def test_an_alarm_watches_the_violations_of_every_kind(template: dict[str, Any]) -> None:
    """The alarm sums ConsistencyViolations over kinds (the EMF rollup without ``kind``)."""
    alarm = _resource(template, "ConsistencyViolationsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("syncer", "ConsistencyViolations")
    assert alarm["Dimensions"] == [{"Name": "Service", "Value": "syncer"}]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 0)
