"""Lambda's checks: sampled keys go to an SQS queue with DelaySeconds; the checker function reads it.

The stream function sends each batch's samples (``SendMessageBatch``, 10 per call) after the
batch is durable; a failed send is counted and logged, never a batch failure. The checker
function receives them ``check_after_s`` later as an SQS event and answers with the messages
it could not check (``ReportBatchItemFailures``), which SQS delivers again.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from syncer.config import Config
from syncer.consistency.check import run_checks, sample_batch
from syncer.consistency.messages import parse_message
from syncer.consistency.report import log_violations, tally
from syncer.core.consistency import SampledWrite
from syncer.core.outcome import BatchOutcome
from syncer.errors import ConfigError, PoisonRecordError
from syncer.sinks.build import AWS_CONNECT_TIMEOUT_S, AWS_READ_TIMEOUT_S
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Deadline, ErrorKind, classify

log = logging.getLogger("syncer.consistency")

SEND_BATCH = 10  # SendMessageBatch takes at most 10 entries
SEND_THREADS = 8


def send_samples(sqs: Any, queue_url: str, samples: Sequence[SampledWrite], delay_s: float) -> int:
    """Queue the samples, visible ``delay_s`` from now; how many SQS did not accept.

    More than one ``SendMessageBatch`` go out side by side (boto3 clients are thread-safe),
    so a high sample rate costs the batch a few round trips, not one per 10 keys.
    """
    delay = min(900, math.ceil(delay_s))
    chunks = [samples[start : start + SEND_BATCH] for start in range(0, len(samples), SEND_BATCH)]

    def send(chunk: Sequence[SampledWrite]) -> int:
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {
                    "Id": str(n),
                    "MessageBody": orjson.dumps(sample.to_message()).decode(),
                    "DelaySeconds": delay,
                }
                for n, sample in enumerate(chunk)
            ],
        )
        for failure in response.get("Failed", []):
            log.error(
                "consistency check not queued: %s %s", failure.get("Code"), failure.get("Message")
            )
        return len(response.get("Failed", []))

    if len(chunks) <= 1:
        return sum(send(chunk) for chunk in chunks)
    with ThreadPoolExecutor(max_workers=min(SEND_THREADS, len(chunks))) as pool:
        return sum(pool.map(send, chunks))


class SqsScheduler:
    """Samples each batch's written keys and queues their checks; counts what it could not."""

    def __init__(
        self, config: Config, sqs: Callable[[], Any], rng: random.Random | None = None
    ) -> None:
        if config.consistency.queue_url is None:
            raise ValueError("SqsScheduler needs [consistency] queue_url")
        self.config = config
        self.queue_url = config.consistency.queue_url
        self._sqs = sqs  # built on first use: a batch with nothing sampled makes no client
        self.rng = rng or random.Random()

    def schedule(self, outcome: BatchOutcome, deadline: Deadline | None = None) -> dict[str, int]:
        """``scheduled`` and ``schedule_failures`` of this batch; never raises.

        With too little of the invocation left for a send, nothing is sent (counted): the batch's
        response matters more than its checks.
        """
        samples: list[SampledWrite] = []
        try:
            samples = sample_batch(outcome.written, self.config, self.rng)
            if not samples:
                return {"scheduled": 0, "schedule_failures": 0}
            if deadline is not None:
                deadline.check_fits(AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S)
            sqs = self._sqs()
            refused = send_samples(
                sqs, self.queue_url, samples, self.config.consistency.check_after_s
            )
        except Exception as error:  # noqa: BLE001 - a check is never worth a batch: counted, logged
            log.error(
                "%d consistency checks not queued to %s: %s: %s",
                len(samples),
                self.queue_url,
                type(error).__name__,
                error,
            )
            return {"scheduled": 0, "schedule_failures": max(1, len(samples))}
        return {"scheduled": len(samples) - refused, "schedule_failures": refused}


def handle_check_event(
    event: Mapping[str, Any], config: Config, sinks: Sinks
) -> tuple[dict[str, list[dict[str, str]]], dict[str, int]]:
    """Check the SQS messages of ``event``: (the partial batch response, the counts).

    A message that is not a check (bad JSON, another format, a table or index not configured,
    keys that cannot be the key of its document id) is logged and counted as ``malformed``, not
    retried: no retry can fix it, and it never joins the reads of the good messages. A shared
    read refused for another reason than an outage (keys that are not the table's key schema)
    is tried again message by message, so only the message it is about is malformed. When a
    downstream fails, every well-formed message is reported so that SQS delivers it again. A
    configuration that can never work (``ConfigError``, such as a database number on a Redis
    Cluster) and an error nobody expected (a bug) fail the invocation, as in the stream
    function.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        raise PoisonRecordError("not an SQS event: no Records list")
    parsed: list[tuple[str, SampledWrite]] = []
    malformed = 0
    for record in records:
        try:
            parsed.append(parse_message(record, config))
        except PoisonRecordError as error:
            malformed += 1
            _log_malformed(record, error)
    try:
        results = run_checks([sample for _, sample in parsed], config, sinks)
    except Exception as error:
        if _fails_the_invocation(error):
            raise
        if classify(error) in (ErrorKind.TRANSIENT, ErrorKind.BREAKER_OPEN):
            return _retry_all(parsed, error, malformed)
        return _check_one_by_one(parsed, config, sinks, malformed)
    log_violations(results)
    return {"batchItemFailures": []}, {**tally(results), "malformed": malformed}


def _log_malformed(record: object, error: Exception) -> None:
    message_id = record.get("messageId") if isinstance(record, Mapping) else None
    log.error("consistency check message %s is not a check: %s", message_id, error)


def _fails_the_invocation(error: Exception) -> bool:
    """A bug, or a configuration that can never work: no redelivery of the messages can help."""
    return classify(error) is ErrorKind.UNEXPECTED or isinstance(error, ConfigError)


def _retry_all(
    messages: Sequence[tuple[str, SampledWrite]], error: Exception, malformed: int
) -> tuple[dict[str, list[dict[str, str]]], dict[str, int]]:
    log.error(
        "%d consistency checks failed and will be retried: %s: %s",
        len(messages),
        type(error).__name__,
        error,
    )
    failures = [{"itemIdentifier": message_id} for message_id, _ in messages]
    return {"batchItemFailures": failures}, {"errors": len(messages), "malformed": malformed}


def _check_one_by_one(
    messages: Sequence[tuple[str, SampledWrite]], config: Config, sinks: Sinks, malformed: int
) -> tuple[dict[str, list[dict[str, str]]], dict[str, int]]:
    """After a shared read was refused for a reason other than an outage: each message alone, so
    one that only its own read refuses (DynamoDB's ValidationException) is malformed, and the
    others are checked or retried on their own account."""
    results = []
    failures: list[dict[str, str]] = []
    for message_id, sample in messages:
        try:
            results.extend(run_checks([sample], config, sinks))
        except Exception as error:
            if _fails_the_invocation(error):
                raise
            if _refused_as_invalid(error):
                malformed += 1
                log.error("consistency check message %s is not a check: %s", message_id, error)
            else:
                log.error(
                    "consistency check %s failed and will be retried: %s: %s",
                    message_id,
                    type(error).__name__,
                    error,
                )
                failures.append({"itemIdentifier": message_id})
    log_violations(results)
    counts = {**tally(results), "malformed": malformed, "errors": len(failures)}
    return {"batchItemFailures": failures}, counts


def _refused_as_invalid(error: Exception) -> bool:
    """A request DynamoDB refused for what it asked (a key that is not the table's), or a
    document id OpenSearch refused: about the message, not the service."""
    if isinstance(error, PoisonRecordError):
        return True
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, Mapping) else None
    return code == "ValidationException" or classify(error) is ErrorKind.PERMANENT
