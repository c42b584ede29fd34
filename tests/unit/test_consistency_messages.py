"""The checker's SQS messages, without servers: key checks, and reads isolated per message."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from syncer.config import parse_config
from syncer.consistency import queue
from syncer.consistency.messages import check_keys
from syncer.core.consistency import CheckKind, CheckResult, SampledWrite
from syncer.core.versions import Version
from syncer.errors import ConfigError, PoisonRecordError

CONFIG = parse_config({"tables": [{"name": "catalog", "index": "catalog"}]}, {})


def _sample(pk: str) -> SampledWrite:
    return SampledWrite(
        table="catalog",
        index="catalog",
        document_id=f"{pk}|v1",
        keys={"pk": {"S": pk}, "sk": {"S": "v1"}},
        version=Version(seq=7, stream_ms=1, changed_at_ms=1_780_000_000_000),
        fingerprint="f",
        cache_keys=(),
        sampled_at_ms=1_780_000_000_500,
    )


def _event(*pks: str) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m-{pk}", "body": json.dumps(_sample(pk).to_message())} for pk in pks
        ]
    }


def _ok(sample: SampledWrite) -> CheckResult:
    return CheckResult(sample, CheckKind.OK, CheckKind.OK, sample.version)


def _sinks() -> Any:
    return SimpleNamespace()  # run_checks, the only reader, is replaced in these tests


def _validation_error() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ValidationException", "Message": "key element mismatch"}},
        "BatchGetItem",
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "keys are empty"),
        ({"pk": "p1", "sk": {"S": "v1"}}, "one DynamoDB-typed value"),
        ({"pk": {"S": "p1", "N": "1"}, "sk": {"S": "v1"}}, "one DynamoDB-typed value"),
        ({"pk": {"M": {}}, "sk": {"S": "v1"}}, "typed 'M': key types are S, N and B"),
        ({"pk": {"S": "p1"}, "sk": {"S": "v1"}, "x": {"S": "y"}}, "a DynamoDB key has 1 or 2"),
        ({"pk": {"S": ""}, "sk": {"S": "v1"}}, "non-empty string"),
        ({"pk": {"S": 5}, "sk": {"S": "v1"}}, "non-empty string"),
        ({"pk": {"S": "p2"}, "sk": {"S": "v1"}}, "keys are those of document 'p2|v1'"),
    ],
)
def test_keys_that_are_not_the_tables_key_of_the_id_are_refused(keys: Any, message: str) -> None:
    """Each way a message's keys can be wrong is a PoisonRecordError that says which."""
    with pytest.raises(PoisonRecordError, match=message):
        check_keys(dataclasses.replace(_sample("p1"), keys=keys))


def test_number_and_binary_keys_are_checked_in_their_lambda_form() -> None:
    """N must be a finite number, B base64 of some bytes."""
    numeric = dataclasses.replace(_sample("p1"), keys={"n": {"N": "NaN"}}, document_id="NaN")
    with pytest.raises(PoisonRecordError, match="not a finite number"):
        check_keys(numeric)
    binary = dataclasses.replace(_sample("p1"), keys={"b": {"B": "not base64!"}})
    with pytest.raises(PoisonRecordError, match="not base64"):
        check_keys(binary)


def test_a_read_only_one_message_breaks_is_isolated_and_that_message_is_malformed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shared read refused for one message's sake is retried per message: the rest are checked."""

    def run_checks(samples: list[SampledWrite], config: Any, sinks: Any) -> list[CheckResult]:
        if any(s.document_id == "poison|v1" for s in samples):
            raise _validation_error()
        return [_ok(s) for s in samples]

    monkeypatch.setattr(queue, "run_checks", run_checks)
    response, counts = queue.handle_check_event(_event("a", "poison", "b"), CONFIG, _sinks())
    assert response == {"batchItemFailures": []}
    assert (counts["checks"], counts["malformed"], counts["errors"]) == (2, 1, 0)


def test_an_outage_retries_every_well_formed_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient failure is no message's fault: all are redelivered, none is dropped."""

    def run_checks(samples: list[SampledWrite], config: Any, sinks: Any) -> list[CheckResult]:
        raise ConnectionError("OpenSearch went away")

    monkeypatch.setattr(queue, "run_checks", run_checks)
    response, counts = queue.handle_check_event(_event("a", "b"), CONFIG, _sinks())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-a"}, {"itemIdentifier": "m-b"}]}
    assert (counts["errors"], counts["malformed"]) == (2, 0)


def test_a_configuration_that_can_never_work_fails_the_invocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ConfigError found on first use (a database on a Redis Cluster) raises, as the stream
    function does, instead of returning the messages for redelivery until retention."""

    def run_checks(samples: list[SampledWrite], config: Any, sinks: Any) -> list[CheckResult]:
        raise ConfigError("[redis] url selects database 1, a Redis Cluster has only database 0")

    monkeypatch.setattr(queue, "run_checks", run_checks)
    with pytest.raises(ConfigError, match="database 1"):
        queue.handle_check_event(_event("a", "b"), CONFIG, _sinks())
