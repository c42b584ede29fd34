"""template.yaml deploys the handler with the stream mapping, queues and IAM that syncer relies on."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncer.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
NO_VALUE = {"Ref": "AWS::NoValue"}


class _CloudFormationLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus CloudFormation's short tags (!Ref, !GetAtt, !Sub, !If, ...)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(encoding="utf-8"), _CloudFormationLoader)
    return loaded


def _function(template: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = template["Resources"]["SyncerFunction"]
    assert function["Type"] == "AWS::Serverless::Function"
    properties: dict[str, Any] = function["Properties"]
    return properties


def _stream_mapping(template: dict[str, Any]) -> dict[str, Any]:
    """The DynamoDB Streams mapping (StreamSource dynamodb-streams, the default): an explicit
    resource under the logical ID SAM gave the former `Events: TableStream`."""
    mapping = template["Resources"]["SyncerFunctionTableStream"]
    assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
    assert mapping["Condition"] == "FromTableStream"
    properties: dict[str, Any] = mapping["Properties"]
    assert properties["FunctionName"] == {"Ref": "SyncerFunction"}
    return properties


def _statements(template: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Every statement of SyncerRole's policies, with the condition that guards it (or None)."""
    return _role_statements(template["Resources"]["SyncerRole"])


def _role_statements(role: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Every statement of a role's inline policies, with the condition that guards it (or None)."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                condition, when_true, when_false = statement["Fn::If"]
                assert when_false == NO_VALUE
                found.append((condition, when_true))
            else:
                found.append((None, statement))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_function_runs_the_handler_on_python_3_11(template: dict[str, Any]) -> None:
    """The function's handler, runtime and config path are the ones the package provides."""
    properties = _function(template)
    assert properties["Handler"] == "syncer.handler.lambda_handler"
    assert properties["Runtime"] == "python3.11"
    assert properties["CodeUri"] == "build/lambda"
    assert properties["Environment"]["Variables"]["SYNCER_CONFIG"] == "/var/task/syncer.toml"


def test_handler_names_a_callable(template: dict[str, Any]) -> None:
    """The Handler setting resolves to a function in the syncer package."""
    module_name, _, attribute = _function(template)["Handler"].rpartition(".")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute))


def test_architecture_matches_the_packaging_platform(template: dict[str, Any]) -> None:
    """The function's architecture and Python are those the packaging script builds wheels for."""
    script = (ROOT / "scripts" / "package_lambda.sh").read_text(encoding="utf-8")
    platform = re.search(r"^PLATFORM=(\S+)", script, re.MULTILINE)
    version = re.search(r"^PY_VERSION=(\S+)", script, re.MULTILINE)
    assert platform is not None
    assert version is not None
    properties = _function(template)
    assert platform.group(1) == f"manylinux2014_{properties['Architectures'][0]}"
    assert properties["Runtime"] == f"python{version.group(1)}"


def test_stream_mapping_reports_batch_item_failures(template: dict[str, Any]) -> None:
    """Lambda honours the handler's batchItemFailures only with ReportBatchItemFailures."""
    assert _stream_mapping(template)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_stream_mapping_starts_at_trim_horizon(template: dict[str, Any]) -> None:
    """The mapping starts at the oldest record, so no change made during setup is missed."""
    mapping = _stream_mapping(template)
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["EventSourceArn"] == {"Fn::Sub": "${TableStreamArn}"}


def test_stream_mapping_bisects_failed_batches(template: dict[str, Any]) -> None:
    """A batch whose invocation fails is split in two, isolating the record that breaks it."""
    assert _stream_mapping(template)["BisectBatchOnFunctionError"] is True


def test_discarded_batches_go_to_the_on_failure_queue(template: dict[str, Any]) -> None:
    """Batches Lambda gives up on are described in an SQS queue of the stack."""
    destination = _stream_mapping(template)["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["OnFailureQueue", "Arn"]}
    assert template["Resources"]["OnFailureQueue"]["Type"] == "AWS::SQS::Queue"


def test_stream_mapping_tuning_comes_from_parameters(template: dict[str, Any]) -> None:
    """Batch size, window, retries, record age and parallelism are parameters with our defaults."""
    defaults = {
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 1,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": 72000,
        "ParallelizationFactor": 1,
    }
    mapping = _stream_mapping(template)
    for name, default in defaults.items():
        assert mapping[name] == {"Ref": name}
        assert template["Parameters"][name]["Default"] == default, name


def test_parameter_ranges_are_lambdas_limits(template: dict[str, Any]) -> None:
    """Each tuning parameter accepts exactly the range the event source mapping API accepts."""
    limits = {
        "BatchSize": (1, 10000),
        "MaximumBatchingWindowInSeconds": (0, 300),
        "MaximumRetryAttempts": (-1, 10000),
        "MaximumRecordAgeInSeconds": (-1, 604800),
        "ParallelizationFactor": (1, 10),
    }
    for name, (low, high) in limits.items():
        parameter = template["Parameters"][name]
        assert (parameter["MinValue"], parameter["MaxValue"]) == (low, high), name


def test_record_age_limit_gives_up_while_the_stream_still_holds_the_records(
    template: dict[str, Any],
) -> None:
    """The default record age is under the stream's 24 h, so discarded ranges can be replayed."""
    default = template["Parameters"]["MaximumRecordAgeInSeconds"]["Default"]
    assert 60 <= default < 24 * 3600


def test_function_uses_its_own_role_and_no_sam_policies(template: dict[str, Any]) -> None:
    """An explicit role stops SAM from attaching its broad stream and VPC managed policies."""
    properties = _function(template)
    assert properties["Role"] == {"Fn::GetAtt": ["SyncerRole", "Arn"]}
    assert "Policies" not in properties
    assert "Events" not in properties  # a SAM event would bring SAM's own policies
    assert "Type" not in _stream_mapping(template)["DestinationConfig"]["OnFailure"]


def test_role_grants_exactly_the_least_privilege_actions(template: dict[str, Any]) -> None:
    """The role allows only what the function and its mapping use, each on its own resource."""
    granted = {
        (action, str(resource))
        for _, statement in _statements(template)
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }
    stream = str({"Fn::Sub": "${TableStreamArn}"})
    kinesis = str({"Fn::Sub": "${KinesisStreamArn}"})
    consumer = str({"Fn::GetAtt": ["SyncerKinesisConsumer", "ConsumerARN"]})
    on_failure = str({"Fn::GetAtt": ["OnFailureQueue", "Arn"]})
    dead_letters = str({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    assert granted == {
        ("logs:CreateLogStream", str({"Fn::GetAtt": ["SyncerLogGroup", "Arn"]})),
        ("logs:PutLogEvents", str({"Fn::GetAtt": ["SyncerLogGroup", "Arn"]})),
        ("dynamodb:DescribeStream", stream),
        ("dynamodb:GetRecords", stream),
        ("dynamodb:GetShardIterator", stream),
        ("dynamodb:ListStreams", str({"Fn::Sub": "${TableArn}/stream/*"})),
        ("kinesis:DescribeStream", kinesis),
        ("kinesis:DescribeStreamSummary", kinesis),
        ("kinesis:GetRecords", kinesis),
        ("kinesis:GetShardIterator", kinesis),
        ("kinesis:ListShards", kinesis),
        ("kinesis:DescribeStreamConsumer", consumer),
        ("kinesis:SubscribeToShard", consumer),
        (
            "kinesis:ListStreams",
            str(
                {
                    "Fn::Sub": "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/*"
                }
            ),
        ),
        ("kms:Decrypt", str({"Ref": "KinesisStreamKmsKeyArn"})),
        ("dynamodb:BatchGetItem", str({"Ref": "TableArn"})),
        ("es:ESHttpPost", str({"Fn::Sub": "${OpenSearchDomainArn}/*"})),
        ("es:ESHttpHead", str({"Fn::Sub": "${OpenSearchDomainArn}/*"})),
        ("sqs:SendMessage", on_failure),
        ("sqs:SendMessage", dead_letters),
        ("sqs:SendMessage", str({"Fn::GetAtt": ["ConsistencyCheckQueue", "Arn"]})),
        ("secretsmanager:GetSecretValue", str({"Ref": "OpenSearchSecretArn"})),
        ("secretsmanager:GetSecretValue", str({"Ref": "RedisSecretArn"})),
        ("kms:GenerateDataKey", str({"Ref": "QueueKmsKeyArn"})),
        ("kms:Decrypt", str({"Ref": "QueueKmsKeyArn"})),
        ("kms:Decrypt", str({"Ref": "EnvironmentKmsKeyArn"})),
    }
    assert all(statement["Effect"] == "Allow" for _, statement in _statements(template))


def test_secret_reads_are_granted_only_when_a_secret_is_given(template: dict[str, Any]) -> None:
    """GetSecretValue statements exist only under the condition that their ARN is set."""
    guarded = {
        statement["Resource"]["Ref"]: condition
        for condition, statement in _statements(template)
        if statement["Action"] == "secretsmanager:GetSecretValue"
    }
    assert guarded == {
        "OpenSearchSecretArn": "HasOpenSearchSecret",
        "RedisSecretArn": "HasRedisSecret",
    }
    for parameter, condition in guarded.items():
        assert template["Parameters"][parameter]["Default"] == ""
        assert template["Conditions"][condition] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]
        }


def test_vpc_config_is_set_only_when_subnets_are_given(template: dict[str, Any]) -> None:
    """Without subnets the function runs outside a VPC; with them it gets subnets and groups."""
    assert _function(template)["VpcConfig"] == {
        "Fn::If": [
            "InVpc",
            {"SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}},
            NO_VALUE,
        ]
    }
    assert template["Conditions"]["InVpc"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}]
    }
    assert template["Parameters"]["SubnetIds"]["Default"] == ""


def test_vpc_access_policy_is_attached_only_in_a_vpc(template: dict[str, Any]) -> None:
    """The managed policy for network interfaces is attached under the same InVpc condition."""
    condition, when_true, when_false = template["Resources"]["SyncerRole"]["Properties"][
        "ManagedPolicyArns"
    ]["Fn::If"]
    assert condition == "InVpc"
    assert when_false == NO_VALUE
    assert when_true == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
            "AWSLambdaVPCAccessExecutionRole"
        }
    ]


def test_queues_are_encrypted_and_keep_messages_14_days(template: dict[str, Any]) -> None:
    """Both queues use SSE and the longest retention, and outlive the stack."""
    for name in ("OnFailureQueue", "DeadLetterQueue"):
        queue = template["Resources"][name]
        assert queue["Properties"]["SqsManagedSseEnabled"] == {
            "Fn::If": ["HasQueueKey", False, True]
        }, name
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600, name
        assert queue["DeletionPolicy"] == queue["UpdateReplacePolicy"] == "Retain", name


def test_function_environment_names_the_endpoints_and_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    """The function learns the URLs and syncer's own dead-letter queue from its environment."""
    variables = _function(template)["Environment"]["Variables"]
    assert variables["OPENSEARCH_URL"] == {"Ref": "OpenSearchUrl"}
    assert variables["REDIS_URL"] == {"Ref": "RedisUrl"}
    assert variables["SYNCER_DEADLETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}


def test_urls_that_may_hold_credentials_are_no_echo(template: dict[str, Any]) -> None:
    """CloudFormation hides the URL parameters, which can carry a password."""
    for name in ("OpenSearchUrl", "RedisUrl"):
        assert template["Parameters"][name]["NoEcho"] is True, name


def test_outputs_name_the_function_role_and_queues(template: dict[str, Any]) -> None:
    """The stack outputs the function ARN, its role and both queue URLs."""
    outputs = template["Outputs"]
    assert outputs["FunctionArn"]["Value"] == {"Fn::GetAtt": ["SyncerFunction", "Arn"]}
    assert outputs["RoleArn"]["Value"] == {"Fn::GetAtt": ["SyncerRole", "Arn"]}
    assert outputs["OnFailureQueueUrl"]["Value"] == {"Ref": "OnFailureQueue"}
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}


def test_packaged_config_sends_dead_letters_to_the_stack_queue() -> None:
    """deploy/syncer.lambda.toml is valid and, with the template's env, uses the SQS queue."""
    raw = tomllib.loads((ROOT / "deploy" / "syncer.lambda.toml").read_text(encoding="utf-8"))
    environ = {
        "OPENSEARCH_URL": "https://search-x.us-east-1.es.amazonaws.com:443",
        "REDIS_URL": "rediss://x.cache.amazonaws.com:6379/0",
        "SYNCER_DEADLETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dl",
    }
    config = parse_config(raw, environ)
    assert config.deadletter.sqs_queue_url == environ["SYNCER_DEADLETTER_QUEUE_URL"]
    assert config.deadletter.file is None


def test_cfn_lint_passes() -> None:
    """cfn-lint finds no error or warning in template.yaml."""
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    assert cfn_lint.exists(), "cfn-lint is missing: pip install -e '.[dev]'"
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_alarms_watch_lag_failures_and_both_queues(template: dict[str, Any]) -> None:
    """Lag, failed invocations, dead letters and discarded batches each raise an alarm."""
    watched = {
        (alarm["Namespace"], alarm["MetricName"], str(alarm["Dimensions"][0]["Value"]))
        for alarm in _alarms(template).values()
    }
    function = str({"Ref": "SyncerFunction"})
    assert watched == {
        ("AWS/Lambda", "IteratorAge", function),
        ("AWS/Lambda", "Errors", function),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            str({"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}),
        ),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            str({"Fn::GetAtt": ["OnFailureQueue", "QueueName"]}),
        ),
        ("syncer", "ConsistencyViolations", "syncer"),
    }


def test_alarms_notify_the_topic_only_when_one_is_given(template: dict[str, Any]) -> None:
    """With AlarmTopicArn empty the alarms exist without actions, so a deploy never fails on it."""
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    expected = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], NO_VALUE]}
    for alarm in _alarms(template).values():
        assert alarm["AlarmActions"] == expected
        assert alarm["OKActions"] == expected
        assert alarm["TreatMissingData"] == "notBreaching"


def test_iterator_age_threshold_is_the_parameter_in_milliseconds(template: dict[str, Any]) -> None:
    """IteratorAge is reported in milliseconds; the parameter is in seconds."""
    alarm = _alarms(template)["IteratorAgeAlarm"]
    assert alarm["Threshold"] == {"Fn::Sub": "${IteratorAgeAlarmSeconds}000"}
