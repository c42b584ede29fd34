"""AWS Lambda entry point for a DynamoDB Streams event source mapping (ReportBatchItemFailures)."""

from __future__ import annotations

import functools
import gc
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncer.config import Config, emf_metrics_enabled, load_config, running_in_lambda
from syncer.core.records import check_event
from syncer.errors import BatchFailedError
from syncer.pipeline import cyclic_gc_paused, process_batch
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Deadline

if TYPE_CHECKING:  # imported on first use: a cold start without checks never loads it
    from syncer.consistency.queue import SqsScheduler

log = logging.getLogger(__name__)

# Leave Lambda this much time to return the response after the last retry gives up.
RESPONSE_MARGIN_S = 3.0


@dataclass(slots=True)
class _Container:
    """Config and clients, built on the first invocation and reused while the container lives."""

    config: Config
    sinks: Sinks
    checks: SqsScheduler | None = None  # [consistency] with a queue_url: samples go there


_container: _Container | None = None


def _get_container() -> _Container:
    global _container
    if _container is None:
        from syncer.sinks.build import build_sinks

        if running_in_lambda():  # in Lambda: JSON lines for Logs Insights
            from syncer.obs.logs import configure_logging

            configure_logging(json_lines=True)
        config = load_config()
        _container = _Container(config, build_sinks(config), _check_scheduler(config))
        # Everything alive now (modules, clients, config) lives as long as the container: move it
        # out of the collector's sight so full collections stop rescanning it on every batch.
        gc.freeze()
    return _container


def _check_scheduler(config: Config) -> SqsScheduler | None:
    """Lambda checks consistency only through a queue (docs/consistency.md); else not at all."""
    if not config.consistency.enabled(in_lambda=True):
        return None
    from syncer.consistency.queue import SqsScheduler
    from syncer.sinks.build import aws_client

    return SqsScheduler(config, functools.cache(lambda: aws_client("sqs")))


def reset_container() -> None:
    """Forget the cached config and clients (tests, or after changing SYNCER_CONFIG)."""
    global _container
    _container = None


def _deadline(context: Any) -> Deadline | None:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return None
    return Deadline.after(max(0.0, remaining_ms() / 1000 - RESPONSE_MARGIN_S))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Apply a DynamoDB Streams batch; return the records Lambda must retry from.

    A wrong event raises before anything is applied, so Lambda retries it whole and logs why.
    When every record failed the invocation fails too (``BatchFailedError``), as Powertools
    does: Lambda retries the batch either way, and the function-errors alarm fires.
    """
    records = check_event(event)
    container = _get_container()
    # The collector stays off until the batch's values are freed (when ``_handle_batch``
    # returns): turned on while the outcome still held them, it would first walk them all.
    with cyclic_gc_paused():
        return _handle_batch(records, container, _deadline(context))


def _handle_batch(
    records: list[dict[str, Any]], container: _Container, deadline: Deadline | None
) -> dict[str, list[dict[str, str]]]:
    outcome = process_batch(records, container.config, container.sinks, deadline)
    checks = container.checks
    scheduled = checks.schedule(outcome, deadline) if checks is not None else None
    if emf_metrics_enabled():
        from syncer.obs.metrics import write_emf

        write_emf(outcome, {"Service": "syncer"}, sys.stdout)
        if scheduled is not None:
            from syncer.consistency import report

            document = report.schedule_emf_document(scheduled, {"Service": "syncer"})
            report.write_emf([document], sys.stdout)
    if outcome.all_failed:
        raise BatchFailedError(
            f"every one of the batch's {outcome.records_in} records failed and will be retried; "
            "the log lines above say why"
        )
    return outcome.lambda_response()


def consistency_check_handler(
    event: dict[str, Any], context: Any
) -> dict[str, list[dict[str, str]]]:
    """The checker function: SQS messages of sampled keys -> checks (docs/consistency.md).

    Answers with the messages to deliver again (``ReportBatchItemFailures``): those whose check
    a downstream failure stopped.
    """
    from syncer.consistency.queue import handle_check_event

    container = _get_container()
    response, counts = handle_check_event(event, container.config, container.sinks)
    if emf_metrics_enabled():
        from syncer.consistency import report

        report.write_emf(report.emf_documents(counts, {"Service": "syncer"}), sys.stdout)
    return response
