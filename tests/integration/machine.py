"""template.yaml's reindex state machine walked by tests/asl.py over the real handler, in this
process or (``python -m tests.integration.machine INPUT_JSON EXECUTION``) in a child that a
test can SIGKILL (``SYNCER_TEST_KILL_AT``)."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any


def definition() -> dict[str, Any]:
    """The machine's definition with CloudFormation's DefinitionSubstitutions applied."""
    import yaml

    from tests.unit.test_deploy_template import TEMPLATE, _CloudFormationLoader

    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), _CloudFormationLoader)
    raw = json.dumps(template["Resources"]["ReindexStateMachine"]["Properties"]["Definition"])
    substitutions = {
        "ReindexFunctionArn": "reindex",
        "ResultsBucket": "results",
        "MaxConcurrency": "3",
    }
    for name, value in substitutions.items():
        raw = raw.replace("${" + name + "}", value)
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


def run_machine(s3: Any, execution_input: dict[str, Any], execution: str = "") -> Any:
    """One execution (``execution`` names it: the same name is a redrive of it)."""
    from syncer import reindex_handler
    from tests import asl

    def read_s3(bucket: str, key: str) -> bytes:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    reindex_handler.reset_clients()
    try:
        return asl.run(
            definition(),
            execution_input,
            lambda payload: reindex_handler.lambda_handler(payload, None),
            read_s3,
            {"Execution": {"Id": execution or f"arn:execution:{uuid.uuid4().hex[:8]}"}},
        )
    finally:
        reindex_handler.reset_clients()


if __name__ == "__main__":
    from syncer.sinks.build import aws_client

    print(json.dumps(run_machine(aws_client("s3"), json.loads(sys.argv[1]), sys.argv[2])))
