"""template.yaml holds up to a security review: data at rest encrypted, keys granted narrowly,
every check the scanner skips explained where the resource is defined (docs/deploy.md, "Security").
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.test_deploy_template import NO_VALUE, ROOT, _as_list, _role_statements, template

__all__ = ["template"]  # the module-scoped fixture, shared

# Each optional customer managed key, and the condition that says it was given.
KEYS = {
    "QueueKmsKeyArn": "HasQueueKey",
    "LogKmsKeyArn": "HasLogKey",
    "EnvironmentKmsKeyArn": "HasEnvironmentKey",
    "KinesisStreamKmsKeyArn": "HasKinesisStreamKey",
}
SQS_ONLY = {"StringEquals": {"kms:ViaService": {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}}}

# The checks skipped on purpose, each with its reason in the resource's Metadata. A new skip is
# a decision for a reviewer: add it here and to docs/deploy.md's table.
EXPECTED_SKIPS = {
    ("SyncerFunction", "CKV_AWS_115"),
    ("SyncerFunction", "CKV_AWS_116"),
    ("ConsistencyCheckerFunction", "CKV_AWS_116"),
    ("ReindexFunction", "CKV_AWS_115"),
    ("ReindexFunction", "CKV_AWS_116"),
    ("ReindexResultsBucket", "CKV_AWS_18"),
    ("ReindexResultsBucket", "CKV_AWS_21"),
}


def _of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def _grants(role: dict[str, Any], prefix: str) -> list[tuple[str | None, dict[str, Any]]]:
    return [
        (condition, statement)
        for condition, statement in _role_statements(role)
        if any(action.startswith(prefix) for action in _as_list(statement["Action"]))
    ]


def _function_roles(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each function's name -> its role resource."""
    roles = {}
    for name, function in _of_type(template, "AWS::Serverless::Function").items():
        role_name = function["Properties"]["Role"]["Fn::GetAtt"][0]
        roles[name] = template["Resources"][role_name]
    return roles


def test_every_queue_is_encrypted_at_rest(template: dict[str, Any]) -> None:
    """Each queue uses SQS-managed keys, or the customer key when QueueKmsKeyArn is given."""
    queues = _of_type(template, "AWS::SQS::Queue")
    assert set(queues) == {
        "ConsistencyCheckQueue",
        "ConsistencyCheckDeadLetterQueue",
        "OnFailureQueue",
        "DeadLetterQueue",
    }
    for name, queue in queues.items():
        properties = queue["Properties"]
        assert properties["SqsManagedSseEnabled"] == {"Fn::If": ["HasQueueKey", False, True]}, name
        assert properties["KmsMasterKeyId"] == {
            "Fn::If": ["HasQueueKey", {"Ref": "QueueKmsKeyArn"}, NO_VALUE]
        }, name


def test_key_parameters_are_optional_key_arns(template: dict[str, Any]) -> None:
    """Each key parameter defaults to empty (AWS's keys) and accepts only a KMS key ARN."""
    for parameter, condition in KEYS.items():
        declared = template["Parameters"][parameter]
        assert declared["Default"] == "", parameter
        assert template["Conditions"][condition] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]
        }
        pattern = re.compile(declared["AllowedPattern"])
        assert pattern.fullmatch("")
        assert pattern.fullmatch(
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        )
        assert pattern.fullmatch("arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd")
        assert not pattern.fullmatch("alias/syncer"), parameter  # IAM grants need the key ARN
        assert not pattern.fullmatch("1234abcd-12ab-34cd-56ef-1234567890ab"), parameter


def test_the_log_group_and_every_environment_use_their_key_when_given(
    template: dict[str, Any],
) -> None:
    """The log group and each function's environment variables are encrypted with the given key."""
    (log_group,) = _of_type(template, "AWS::Logs::LogGroup").values()
    assert log_group["Properties"]["KmsKeyId"] == {
        "Fn::If": ["HasLogKey", {"Ref": "LogKmsKeyArn"}, NO_VALUE]
    }
    functions = _of_type(template, "AWS::Serverless::Function")
    assert set(functions) == {"SyncerFunction", "ConsistencyCheckerFunction", "ReindexFunction"}
    for name, function in functions.items():
        assert function["Properties"]["KmsKeyArn"] == {
            "Fn::If": ["HasEnvironmentKey", {"Ref": "EnvironmentKmsKeyArn"}, NO_VALUE]
        }, name


def test_every_function_role_may_decrypt_its_environment_only_with_the_key(
    template: dict[str, Any],
) -> None:
    """Each function's role gets kms:Decrypt on the environment key, and only when it is given."""
    for name, role in _function_roles(template).items():
        grants = [
            statement
            for condition, statement in _grants(role, "kms:")
            if statement["Resource"] == {"Ref": "EnvironmentKmsKeyArn"}
        ]
        assert len(grants) == 1, name
        assert grants[0]["Action"] == "kms:Decrypt", name
        assert ("HasEnvironmentKey", grants[0]) in _role_statements(role), name


def test_queue_users_may_use_the_queue_key_through_sqs_only(template: dict[str, Any]) -> None:
    """A role that sends (the functions, the stream's OnFailure destination) gets GenerateDataKey
    and Decrypt on the queue key, one that receives (the SQS mapping) Decrypt: via SQS, if given."""
    checked = set()
    for name, role in _function_roles(template).items():
        sqs_actions = {
            action
            for _, statement in _grants(role, "sqs:")
            for action in _as_list(statement["Action"])
        }
        needed = set()
        if "sqs:SendMessage" in sqs_actions:
            needed |= {"kms:GenerateDataKey", "kms:Decrypt"}
        if "sqs:ReceiveMessage" in sqs_actions:
            needed |= {"kms:Decrypt"}
        queue_key_grants = [
            (condition, statement)
            for condition, statement in _grants(role, "kms:")
            if statement["Resource"] == {"Ref": "QueueKmsKeyArn"}
        ]
        granted = {
            action for _, statement in queue_key_grants for action in _as_list(statement["Action"])
        }
        assert granted == needed, name
        for condition, statement in queue_key_grants:
            assert condition == "HasQueueKey", name
            assert statement["Condition"] == SQS_ONLY, name
        checked.add(name)
    assert checked == {"SyncerFunction", "ConsistencyCheckerFunction", "ReindexFunction"}


def test_every_queue_a_mapping_uses_is_granted_to_the_function_role(
    template: dict[str, Any],
) -> None:
    """Lambda's mappings act with the function's role: it receives from the SQS source and sends
    to the stream's OnFailure destination, so those queues' grants (and key grants) are its own."""
    mappings = _of_type(template, "AWS::Lambda::EventSourceMapping")
    # The stream function's mappings (one per source) are explicit resources, not SAM events.
    assert {m["Properties"]["FunctionName"]["Ref"] for m in mappings.values()} == {"SyncerFunction"}
    for name, role in _function_roles(template).items():
        events = list(template["Resources"][name]["Properties"].get("Events", {}).values())
        events += [
            {"Type": "EventSourceMapping", "Properties": m["Properties"]}
            for m in mappings.values()
            if m["Properties"]["FunctionName"] == {"Ref": name}
        ]
        assert events or name == "ReindexFunction", name  # the state machine invokes it
        grants = _grants(role, "sqs:")
        for event in events:
            properties = event["Properties"]
            if event["Type"] == "SQS":
                assert any(
                    "sqs:ReceiveMessage" in _as_list(s["Action"])
                    and properties["Queue"] in _as_list(s["Resource"])
                    for _, s in grants
                ), name
            destination = properties.get("DestinationConfig", {}).get("OnFailure")
            if destination is not None:
                assert any(
                    "sqs:SendMessage" in _as_list(s["Action"])
                    and destination["Destination"] in _as_list(s["Resource"])
                    for _, s in grants
                ), name


def test_every_kms_grant_names_one_optional_key_under_its_condition(
    template: dict[str, Any],
) -> None:
    """No role may use a key that was not given, nor any key by wildcard."""
    for role in _of_type(template, "AWS::IAM::Role").values():
        for condition, statement in _grants(role, "kms:"):
            (parameter,) = (p for p in KEYS if statement["Resource"] == {"Ref": p})
            assert condition == KEYS[parameter]
            assert set(_as_list(statement["Action"])) <= {"kms:Decrypt", "kms:GenerateDataKey"}


def test_the_checker_concurrency_is_one_limit_in_both_places(template: dict[str, Any]) -> None:
    """The SQS mapping never invokes more checkers than are reserved, so none is throttled."""
    checker = template["Resources"]["ConsistencyCheckerFunction"]["Properties"]
    limit = {"Ref": "ConsistencyCheckerMaxConcurrency"}
    assert checker["ReservedConcurrentExecutions"] == limit
    (event,) = checker["Events"].values()
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": limit}
    parameter = template["Parameters"]["ConsistencyCheckerMaxConcurrency"]
    assert parameter["MinValue"] == 2  # MaximumConcurrency's own minimum
    assert parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] == 1000


def test_a_check_that_keeps_failing_is_set_aside_before_it_expires(
    template: dict[str, Any],
) -> None:
    """The check queue's redrive moves a failing check to its dead-letter queue, which keeps it
    longer, before the check queue's retention would drop it."""
    queue = template["Resources"]["ConsistencyCheckQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["ConsistencyCheckDeadLetterQueue", "Arn"]
    }
    assert redrive["maxReceiveCount"] * queue["VisibilityTimeout"] < queue["MessageRetentionPeriod"]
    dead = template["Resources"]["ConsistencyCheckDeadLetterQueue"]["Properties"]
    assert dead["MessageRetentionPeriod"] == 14 * 24 * 3600


def _skips(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


def test_every_checkov_skip_names_a_check_and_says_why(template: dict[str, Any]) -> None:
    """Each skipped check is one we decided on, with a reason a reviewer reads next to it."""
    skips = _skips(template)
    assert {(name, skip["id"]) for name, skip in skips} == EXPECTED_SKIPS
    assert len(skips) == len(EXPECTED_SKIPS)  # no check skipped twice on one resource
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (name, skip)
        reason = skip.get("comment", "")
        assert isinstance(reason, str), (name, skip)
        assert len(reason.split()) >= 12, (name, skip["id"], "give the reason, not a label")


@pytest.mark.parametrize(("resource", "check"), sorted(EXPECTED_SKIPS))
def test_docs_explain_every_skip(resource: str, check: str) -> None:
    """docs/deploy.md's security section names each skipped check with its resource."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and check in line]
    assert any(f"`{resource}`" in row for row in rows), (resource, check)
