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
from syncer.consistency.check import check_target, run_checks, sample_batch
from syncer.consistency.report import log_violations, tally
from syncer.core.consistency import SampledWrite
from syncer.core.outcome import BatchOutcome
from syncer.errors import PoisonRecordError
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

    A message that is not a check (bad JSON, another format, a table or index not configured) is
    logged and counted as ``malformed``, not retried: no retry can fix it. When a downstream
    fails, every well-formed message is reported so that SQS delivers it again; an error nobody
    expected (a bug) fails the invocation.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        raise PoisonRecordError("not an SQS event: no Records list")
    samples: list[SampledWrite] = []
    ids: list[str] = []
    malformed = 0
    for record in records:
        message_id = record.get("messageId") if isinstance(record, Mapping) else None
        try:
            if not isinstance(message_id, str):
                raise PoisonRecordError("SQS record without a messageId")
            sample = SampledWrite.from_message(orjson.loads(record.get("body", "")))
            check_target(config, sample)  # a table or index this configuration does not have
            samples.append(sample)
            ids.append(message_id)
        except (PoisonRecordError, orjson.JSONDecodeError) as error:
            malformed += 1
            log.error("consistency check message %s is not a check: %s", message_id, error)
    try:
        results = run_checks(samples, config, sinks)
    except Exception as error:
        if classify(error) is ErrorKind.UNEXPECTED:
            raise  # a bug fails the invocation loudly (SQS delivers the messages again)
        log.error(
            "%d consistency checks failed and will be retried: %s: %s",
            len(samples),
            type(error).__name__,
            error,
        )
        failures = [{"itemIdentifier": message_id} for message_id in ids]
        return {"batchItemFailures": failures}, {"errors": len(samples), "malformed": malformed}
    log_violations(results)
    return {"batchItemFailures": []}, {**tally(results), "malformed": malformed}
