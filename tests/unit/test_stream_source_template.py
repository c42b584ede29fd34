"""template.yaml's StreamSource: exactly one event source mapping and the IAM of the chosen source.

The template is parsed as the other template tests do; conditions and rules are evaluated here
for a set of parameter values, so each test states what a stack deployed with them would get.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.test_deploy_template import NO_VALUE, _as_list, _statements, template

__all__ = ["template"]  # the fixture, imported for pytest

TABLE_STREAM = (
    "arn:aws:dynamodb:eu-west-1:123456789012:table/products/stream/2026-01-01T00:00:00.000"
)
KINESIS_STREAM = "arn:aws:kinesis:eu-west-1:123456789012:stream/products-changes"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# The settings both mappings share: reading from the oldest record, partial batch responses,
# bisection, the retry and age limits, parallelism, batching, and the on-failure destination.
SHARED_SETTINGS = {
    "FunctionName": {"Ref": "SyncerFunction"},
    "StartingPosition": "TRIM_HORIZON",
    "BatchSize": {"Ref": "BatchSize"},
    "MaximumBatchingWindowInSeconds": {"Ref": "MaximumBatchingWindowInSeconds"},
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": {"Ref": "MaximumRetryAttempts"},
    "MaximumRecordAgeInSeconds": {"Ref": "MaximumRecordAgeInSeconds"},
    "ParallelizationFactor": {"Ref": "ParallelizationFactor"},
    "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["OnFailureQueue", "Arn"]}}},
}


def _parameters(template: dict[str, Any], **given: str) -> dict[str, Any]:
    """Every parameter's value: its default unless given."""
    values = {name: p.get("Default") for name, p in template["Parameters"].items()}
    values.update(given)
    return values


def _value(template: dict[str, Any], values: dict[str, Any], node: Any) -> Any:
    """The value of a condition or rule expression (the functions template.yaml uses in them)."""
    if not isinstance(node, dict):
        return node
    ((function, argument),) = node.items()
    if function == "Ref":
        return values[argument]
    if function == "Condition":
        return _value(template, values, template["Conditions"][argument])
    if function == "Fn::Equals":
        left, right = (_value(template, values, a) for a in argument)
        return left == right
    if function == "Fn::Not":
        (inner,) = argument
        return not _value(template, values, inner)
    if function == "Fn::And":
        return all(_value(template, values, a) for a in argument)
    if function == "Fn::Or":
        return any(_value(template, values, a) for a in argument)
    if function == "Fn::Join":
        separator, items = argument
        items = _value(template, values, items)
        return separator.join(_value(template, values, i) for i in _as_list(items))
    raise AssertionError(f"unexpected function {function}")


def _holds(template: dict[str, Any], values: dict[str, Any], condition: str | None) -> bool:
    return condition is None or bool(_value(template, values, template["Conditions"][condition]))


def _failed_rules(template: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The AssertDescription of every rule assertion the values break (CloudFormation refuses
    the stack with it before creating anything)."""
    failed = []
    for rule in template["Rules"].values():
        if not _value(template, values, rule.get("RuleCondition", True)):
            continue
        for assertion in rule["Assertions"]:
            if not _value(template, values, assertion["Assert"]):
                failed.append(assertion["AssertDescription"])
    return failed


def _mappings(template: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The event source mappings the stack gets with these values."""
    return {
        name: {
            key: _chosen(template, values, value) for key, value in resource["Properties"].items()
        }
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
        and _holds(template, values, resource.get("Condition"))
    }


def _chosen(template: dict[str, Any], values: dict[str, Any], node: Any) -> Any:
    """A property with its Fn::If replaced by the branch these values choose."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        condition, when_true, when_false = node["Fn::If"]
        branch = when_true if _holds(template, values, condition) else when_false
        return _chosen(template, values, branch)
    return node


def _resources(template: dict[str, Any], values: dict[str, Any], kind: str) -> dict[str, Any]:
    """The resources of a type the stack gets with these values."""
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind and _holds(template, values, resource.get("Condition"))
    }


def _granted(template: dict[str, Any], values: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, resource) of every SyncerRole statement present with these values."""
    return {
        (action, str(resource))
        for condition, statement in _statements(template)
        if _holds(template, values, condition)
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }


TABLE_STREAM_ACTIONS = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}


def _is_stream_action(action: str) -> bool:
    return action.startswith("kinesis:") or action in TABLE_STREAM_ACTIONS


def _stream_grants(granted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(a, r) for a, r in granted if _is_stream_action(a)}


def _table_source(template: dict[str, Any], **more: str) -> dict[str, Any]:
    return _parameters(template, TableStreamArn=TABLE_STREAM, **more)


def _kinesis_source(template: dict[str, Any], **more: str) -> dict[str, Any]:
    return _parameters(template, StreamSource="kinesis", KinesisStreamArn=KINESIS_STREAM, **more)


def test_the_source_is_a_parameter_whose_default_is_the_tables_stream(
    template: dict[str, Any],
) -> None:
    """StreamSource chooses dynamodb-streams (the default, as before) or kinesis."""
    parameter = template["Parameters"]["StreamSource"]
    assert parameter["Default"] == "dynamodb-streams"
    assert parameter["AllowedValues"] == ["dynamodb-streams", "kinesis"]


def test_the_table_stream_source_gets_exactly_the_mapping_it_had(template: dict[str, Any]) -> None:
    """With the default source the stack has one mapping, the DynamoDB Streams one, with SAM's
    logical ID and exactly the settings the former SAM event produced."""
    mappings = _mappings(template, _table_source(template))
    assert mappings == {
        "SyncerFunctionTableStream": {
            **SHARED_SETTINGS,
            "EventSourceArn": {"Fn::Sub": "${TableStreamArn}"},
        }
    }


def test_the_kinesis_source_gets_exactly_one_kinesis_mapping(template: dict[str, Any]) -> None:
    """With StreamSource kinesis the stack has one mapping, on the Kinesis stream, reporting
    failures per record (kinesis.sequenceNumber) and bisecting, with the same limits."""
    mappings = _mappings(template, _kinesis_source(template))
    assert mappings == {
        "SyncerFunctionKinesisStream": {
            **SHARED_SETTINGS,
            "EventSourceArn": {"Fn::Sub": "${KinesisStreamArn}"},
        }
    }
    (mapping,) = mappings.values()
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True


def test_the_table_stream_source_is_granted_only_the_table_stream(template: dict[str, Any]) -> None:
    """The DynamoDB Streams source reads its stream and lists the table's streams: no Kinesis."""
    stream = str({"Fn::Sub": "${TableStreamArn}"})
    for values in (_table_source(template), _table_source(template, EnvironmentKmsKeyArn=KEY)):
        assert _stream_grants(_granted(template, values)) == {
            ("dynamodb:DescribeStream", stream),
            ("dynamodb:GetRecords", stream),
            ("dynamodb:GetShardIterator", stream),
            ("dynamodb:ListStreams", str({"Fn::Sub": "${TableArn}/stream/*"})),
        }
        assert not any(
            r == str({"Ref": "KinesisStreamKmsKeyArn"}) for _, r in _granted(template, values)
        )


def test_the_kinesis_source_is_granted_only_its_stream(template: dict[str, Any]) -> None:
    """The Kinesis source reads its stream (ListStreams, which names no stream, on the account's
    streams in the Region) and nothing of the table's DynamoDB stream."""
    stream = str({"Fn::Sub": "${KinesisStreamArn}"})
    granted = _granted(template, _kinesis_source(template))
    assert _stream_grants(granted) == {
        ("kinesis:DescribeStream", stream),
        ("kinesis:DescribeStreamSummary", stream),
        ("kinesis:GetRecords", stream),
        ("kinesis:GetShardIterator", stream),
        ("kinesis:ListShards", stream),
        (
            "kinesis:ListStreams",
            str(
                {
                    "Fn::Sub": "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/*"
                }
            ),
        ),
    }
    assert not any(r == str({"Ref": "KinesisStreamKmsKeyArn"}) for _, r in granted)


def test_both_sources_keep_the_rest_of_the_role(template: dict[str, Any]) -> None:
    """Apart from the stream grants, the role is the same for both sources (the table's
    BatchGetItem for re-reads included)."""
    table = _granted(template, _table_source(template))
    kinesis = _granted(template, _kinesis_source(template))
    assert table - _stream_grants(table) == kinesis - _stream_grants(kinesis)
    assert ("dynamodb:BatchGetItem", str({"Ref": "TableArn"})) in kinesis


def test_a_kinesis_stream_key_is_decrypted_through_kinesis_only(template: dict[str, Any]) -> None:
    """With KinesisStreamKmsKeyArn the role may decrypt with that key, via Kinesis only."""
    granted = _granted(template, _kinesis_source(template, KinesisStreamKmsKeyArn=KEY))
    assert {(a, r) for a, r in granted if a.startswith("kms:")} == {
        ("kms:Decrypt", str({"Ref": "KinesisStreamKmsKeyArn"}))
    }
    (statement,) = (
        s for c, s in _statements(template) if s["Resource"] == {"Ref": "KinesisStreamKmsKeyArn"}
    )
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "kinesis.${AWS::Region}.amazonaws.com"}}
    }


def test_every_stream_grant_is_guarded_by_its_source(template: dict[str, Any]) -> None:
    """No stream statement is unconditional: each exists only with its source (or its key)."""
    expected = {"dynamodb:": {"FromTableStream"}, "kinesis:": {"FromKinesis", "KinesisFanOut"}}
    for condition, statement in _statements(template):
        for action in _as_list(statement["Action"]):
            if _is_stream_action(action):
                (prefix,) = (p for p in expected if action.startswith(p))
                assert condition in expected[prefix], action
    # the consumer's grants exist only with the Kinesis source
    assert {"Condition": "FromKinesis"} in template["Conditions"]["KinesisFanOut"]["Fn::And"]
    assert template["Conditions"]["FromTableStream"] == {
        "Fn::Equals": [{"Ref": "StreamSource"}, "dynamodb-streams"]
    }
    assert template["Conditions"]["FromKinesis"] == {
        "Fn::Equals": [{"Ref": "StreamSource"}, "kinesis"]
    }
    assert NO_VALUE not in [s for _, s in _statements(template)]


def test_kinesis_is_read_through_a_shared_poll_unless_fan_out_is_chosen(
    template: dict[str, Any],
) -> None:
    """KinesisConsumer defaults to shared: no consumer is registered and the mapping polls the
    stream, as before the parameter existed."""
    parameter = template["Parameters"]["KinesisConsumer"]
    assert parameter["Default"] == "shared"
    assert parameter["AllowedValues"] == ["shared", "enhanced-fan-out"]
    values = _kinesis_source(template)
    assert _resources(template, values, "AWS::Kinesis::StreamConsumer") == {}
    (mapping,) = _mappings(template, values).values()
    assert mapping["EventSourceArn"] == {"Fn::Sub": "${KinesisStreamArn}"}


def test_enhanced_fan_out_registers_one_consumer_and_maps_the_function_to_it(
    template: dict[str, Any],
) -> None:
    """With enhanced-fan-out the stack registers its own consumer on the stream, the one mapping
    reads through it with every other setting unchanged, and the role may subscribe through that
    consumer only, besides the stream grants the mapping still uses."""
    values = _kinesis_source(template, KinesisConsumer="enhanced-fan-out")
    assert _failed_rules(template, values) == []
    assert _resources(template, values, "AWS::Kinesis::StreamConsumer") == {
        "SyncerKinesisConsumer": {
            "ConsumerName": {"Fn::Sub": "${AWS::StackName}-syncer"},
            "StreamARN": {"Fn::Sub": "${KinesisStreamArn}"},
        }
    }
    consumer = {"Fn::GetAtt": ["SyncerKinesisConsumer", "ConsumerARN"]}
    assert _mappings(template, values) == {
        "SyncerFunctionKinesisStream": {**SHARED_SETTINGS, "EventSourceArn": consumer}
    }
    granted = _stream_grants(_granted(template, values))
    shared = _stream_grants(_granted(template, _kinesis_source(template)))
    assert granted - shared == {
        ("kinesis:DescribeStreamConsumer", str(consumer)),
        ("kinesis:SubscribeToShard", str(consumer)),
    }
    assert shared <= granted


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({}, "StreamSource dynamodb-streams needs TableStreamArn"),
        ({"StreamSource": "kinesis"}, "StreamSource kinesis needs KinesisStreamArn"),
        (
            {"TableStreamArn": TABLE_STREAM, "KinesisStreamArn": KINESIS_STREAM},
            "KinesisStreamArn is read only with StreamSource kinesis",
        ),
        (
            {"TableStreamArn": TABLE_STREAM, "KinesisStreamKmsKeyArn": KEY},
            "KinesisStreamKmsKeyArn is read only with StreamSource kinesis",
        ),
        (
            {
                "StreamSource": "kinesis",
                "KinesisStreamArn": KINESIS_STREAM,
                "TableStreamArn": TABLE_STREAM,
            },
            "TableStreamArn is read only with StreamSource dynamodb-streams",
        ),
        (
            {"TableStreamArn": TABLE_STREAM, "KinesisConsumer": "enhanced-fan-out"},
            "KinesisConsumer enhanced-fan-out is read only with StreamSource kinesis",
        ),
    ],
)
def test_rules_refuse_a_source_without_its_stream_or_with_the_others(
    template: dict[str, Any], given: dict[str, str], refused: str
) -> None:
    """A source without its stream ARN, or with the other source's, is refused with a message."""
    failed = _failed_rules(template, _parameters(template, **given))
    assert len(failed) == 1, failed
    assert failed[0].startswith(refused)


def test_rules_accept_each_source_with_its_stream(template: dict[str, Any]) -> None:
    """The right ARN for each source (and the optional key with Kinesis) passes every rule."""
    assert _failed_rules(template, _table_source(template)) == []
    assert _failed_rules(template, _kinesis_source(template)) == []
    assert _failed_rules(template, _kinesis_source(template, KinesisStreamKmsKeyArn=KEY)) == []


def test_stream_arn_parameters_accept_only_their_kind_of_arn(template: dict[str, Any]) -> None:
    """TableStreamArn takes a DynamoDB stream ARN, KinesisStreamArn a Kinesis stream ARN (or
    empty, the other source); a swap of the two is refused at deploy time."""
    table = re.compile(template["Parameters"]["TableStreamArn"]["AllowedPattern"])
    kinesis = re.compile(template["Parameters"]["KinesisStreamArn"]["AllowedPattern"])
    assert table.fullmatch(TABLE_STREAM)
    assert table.fullmatch("")
    assert kinesis.fullmatch(KINESIS_STREAM)
    assert kinesis.fullmatch("")
    assert not table.fullmatch(KINESIS_STREAM)
    assert not kinesis.fullmatch(TABLE_STREAM)
    assert not kinesis.fullmatch("products-changes")  # the name alone: IAM needs the ARN
