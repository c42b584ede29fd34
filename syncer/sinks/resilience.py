"""Where retries happen: one error classifier, one retry policy, one circuit breaker per downstream.

How every failure is handled (docs/operations.md "How failures are handled" is checked against
``FAILURE_TABLE``):

Retry (outside) wraps breaker (inside) wraps the call, so an open breaker fails fast and every
failed attempt counts toward opening it (REFERENCE.md, pybreaker/tenacity).
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import pybreaker
import tenacity

from syncer.config import ResilienceConfig
from syncer.core.deadline import MIN_REQUEST_S
from syncer.core.deadline import Deadline as Deadline  # its home is core: re-exported
from syncer.errors import (
    ConfigError,
    DownstreamUnavailableError,
    PendingItemsError,
    SyncerError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class ErrorKind(Enum):
    TRANSIENT = "transient"  # retried with backoff, then the records are reported
    PERMANENT = "permanent"  # about one request or document: never retried
    BREAKER_OPEN = "breaker_open"  # fail fast, report the records
    FATAL = "fatal"  # retrying cannot help (auth, permissions): report the records
    UNEXPECTED = "unexpected"  # a bug: the invocation fails loudly, nothing is acknowledged


# The one table of failures: (error, kind, what syncer does). docs/operations.md's table must
# equal it (tests/unit/test_resilience.py compares them).
FAILURE_TABLE: tuple[tuple[str, str, str], ...] = (
    (
        "connection refused/reset, timeout (OpenSearch, Redis, AWS)",
        "transient",
        "retry with backoff, then report the records",
    ),
    ("HTTP 429, 5xx; Redis BUSY/LOADING/TRYAGAIN/CLUSTERDOWN", "transient", "same"),
    (
        "bulk item 429, 5xx, 401/403 (write block, read-only index, security plugin)",
        "transient",
        "same: the records are kept, never dead-lettered",
    ),
    ("DynamoDB/SQS throttling, InternalServerError; SQS batch partly refused", "transient", "same"),
    ("disk full (ENOSPC, EDQUOT) writing the dead-letter file", "transient", "same"),
    (
        "too little invocation time left for another request",
        "transient",
        "report the records before Lambda's timeout",
    ),
    ("circuit breaker open", "breaker open", "fail fast, no retry, report the records"),
    ("version conflict (409) on a bulk item", "conflict", "read the index again and decide again"),
    (
        "other HTTP 4xx on a bulk item (mapping, too large)",
        "permanent",
        "the key's records go to the dead letters, its cache keys are still invalidated",
    ),
    (
        "other 4xx on a whole request, auth errors, permission denied on a file",
        "fatal",
        "no retry, report the records",
    ),
    (
        "malformed record, unknown table, key that cannot be a document id",
        "poison",
        "the record goes to the dead letters with the reason",
    ),
    (
        "any other exception (a bug in syncer)",
        "unexpected",
        "the invocation fails: nothing is acknowledged",
    ),
    (
        "missing index (`syncer setup` not run)",
        "transient",
        "retry, then report the records; the log says to run `syncer setup`",
    ),
    (
        "dead-letter destination fails",
        "transient",
        "report the records (a record without a sequence number fails the whole batch)",
    ),
    (
        "a configuration mistake found on first use (a database number on a Redis Cluster)",
        "config",
        "the invocation fails (`syncer run` stops) with what to change; nothing is acknowledged",
    ),
    (
        "every record of a batch failed",
        "batch failed",
        "the invocation fails, so the function-errors alarm fires",
    ),
)


def failure_table_markdown() -> str:
    """``FAILURE_TABLE`` as the Markdown table docs/operations.md shows (a test keeps them equal)."""
    lines = ["| error | kind | what syncer does |", "|---|---|---|"]
    lines += [f"| {error} | {kind} | {action} |" for error, kind, action in FAILURE_TABLE]
    return "\n".join(lines)


_TRANSIENT_AWS_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "LimitExceededException",
    "AWS.SimpleQueueService.ServiceUnavailable",
}


def _is_transient_status(status: object) -> bool:
    return status == 429 or (isinstance(status, int) and status >= 500)


_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EIO}


def classify(error: BaseException) -> ErrorKind:
    """The one place that decides how an error is handled (``FAILURE_TABLE``)."""
    if isinstance(error, pybreaker.CircuitBreakerError):
        return ErrorKind.BREAKER_OPEN
    if isinstance(error, PendingItemsError | DownstreamUnavailableError):
        return ErrorKind.TRANSIENT
    if isinstance(error, SyncerError):
        return ErrorKind.FATAL  # a configuration or refusal: retrying cannot help
    if isinstance(error, TimeoutError | ConnectionError):
        return ErrorKind.TRANSIENT
    if isinstance(error, OSError) and type(error).__module__ == "builtins":
        return ErrorKind.TRANSIENT if error.errno in _TRANSIENT_ERRNOS else ErrorKind.FATAL
    module = type(error).__module__
    if module.startswith("opensearchpy"):
        from opensearchpy import exceptions as os_errors

        if isinstance(error, os_errors.ConnectionError):  # includes ConnectionTimeout
            return ErrorKind.TRANSIENT
        if isinstance(error, os_errors.TransportError):
            status = error.status_code
            if _is_transient_status(status):
                return ErrorKind.TRANSIENT
            return (
                ErrorKind.PERMANENT
                if isinstance(status, int) and 400 <= status < 500 and status not in (401, 403)
                else ErrorKind.FATAL
            )
        return ErrorKind.FATAL
    if module.startswith("redis"):
        from redis import exceptions as redis_errors

        # Auth errors subclass redis's ConnectionError, but retrying a wrong password is futile.
        if isinstance(error, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
            return ErrorKind.FATAL
        if isinstance(
            error,
            redis_errors.ConnectionError
            | redis_errors.TimeoutError
            | redis_errors.BusyLoadingError
            | redis_errors.TryAgainError
            | redis_errors.ClusterDownError,
        ):
            return ErrorKind.TRANSIENT
        if isinstance(error, redis_errors.ResponseError) and str(error).startswith(
            ("LOADING", "BUSY", "MASTERDOWN")
        ):
            return ErrorKind.TRANSIENT
        return ErrorKind.FATAL
    if module.startswith(("botocore", "boto3")):
        from botocore import exceptions as aws_errors

        if isinstance(error, aws_errors.ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _TRANSIENT_AWS_CODES or _is_transient_status(status):
                return ErrorKind.TRANSIENT
            return ErrorKind.FATAL
        if isinstance(error, aws_errors.ConnectionError | aws_errors.HTTPClientError):
            return ErrorKind.TRANSIENT
        return ErrorKind.FATAL
    return ErrorKind.UNEXPECTED


def reported_failure(error: Exception, what: str) -> str:
    """Log a failure the records will be reported for, and say why; re-raise a bug.

    ``what`` names the step ("OpenSearch write", "Redis invalidation", ...). An exception the
    table does not know (``UNEXPECTED``) is raised again: it fails the invocation loudly. So is
    a ``ConfigError`` a sink finds on first use (a database number on a Redis Cluster): it is
    about the configuration, not the records, and no batch can succeed until it is fixed.
    """
    kind = classify(error)
    if kind is ErrorKind.UNEXPECTED or isinstance(error, ConfigError):
        raise error
    reason = f"{what} failed ({kind.value}): {error}"
    log.error(reason)
    return reason


def is_transient(error: BaseException) -> bool:
    return classify(error) is ErrorKind.TRANSIENT


def _counts_as_success(error: BaseException) -> bool:
    # A 4xx about the request itself says nothing about the downstream's health.
    return classify(error) is ErrorKind.PERMANENT


class _BreakerLogger(pybreaker.CircuitBreakerListener):
    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self.downstream.breaker_changes += 1
        log.warning(
            "circuit breaker %s: %s -> %s",
            cb.name,
            getattr(old_state, "name", old_state),
            getattr(new_state, "name", new_state),
        )


class Downstream:
    """One downstream (OpenSearch, Redis, ...): its breaker and its retry policy."""

    def __init__(
        self, name: str, settings: ResilienceConfig, timeout_s: float | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        # The client's own request timeout, when it cannot be shortened per request (Redis,
        # boto3): an attempt starts only when that much of the invocation is left.
        self.timeout_s = timeout_s
        # Running totals; a batch reports the difference (syncer.obs.metrics).
        self.retries = 0
        self.breaker_changes = 0
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=settings.breaker_fail_max,
            reset_timeout=settings.breaker_reset_timeout_s,
            exclude=[_counts_as_success],
            listeners=[_BreakerLogger(self)],
            name=name,
        )

    @property
    def breaker_state(self) -> str:
        return str(self.breaker.current_state)

    def check_time(self, deadline: Deadline | None) -> None:
        """Raise ``DeadlineExceededError`` when a request of this downstream may outlast it."""
        if deadline is not None:
            deadline.check_fits(self.timeout_s or MIN_REQUEST_S)

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one attempt through the breaker (no retry here).

        ``CircuitBreaker.call`` holds the breaker's lock for the whole call, so every thread
        sharing a downstream (reindex segments, the side requests of a write round) would wait
        for the one request in flight. ``calling()`` takes the lock only to check the state
        (an open breaker still fails fast) and to count the outcome; the request runs outside.
        """
        with self.breaker.calling():
            return function(*args, **kwargs)
        raise AssertionError("unreachable: the block either returns or raises")

    def retrying(self, deadline: Deadline | None = None) -> tenacity.Retrying:
        """A tenacity loop: transient errors only, bounded attempts and time, jittered backoff."""
        settings = self.settings
        budget_s = settings.max_retry_time_s
        if deadline is not None:
            budget_s = min(budget_s, deadline.remaining_s())
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(settings.max_attempts)
            | tenacity.stop_after_delay(budget_s),
            wait=tenacity.wait_exponential_jitter(
                multiplier=settings.initial_backoff_s,
                max=settings.max_backoff_s,
                jitter=settings.initial_backoff_s,
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def call_with_retry(
        self,
        function: Callable[..., T],
        *args: Any,
        deadline: Deadline | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``function`` through the breaker, retrying transient errors."""
        for attempt in self.retrying(deadline):
            with attempt:
                self.check_time(deadline)
                return self.call(function, *args, **kwargs)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s attempt %d failed (%s: %s); retrying",
            self.name,
            state.attempt_number,
            type(error).__name__,
            error,
        )


class Guarded:
    """A client whose every call goes through ``guard.call_with_retry``, namespaces included.

    The management commands use it (``guarded(client, guard).indices.get_alias(...)``) so they
    get the same retry and breaker as the stream path without a wrapper per call.
    """

    __slots__ = ("_guard", "_target")

    def __init__(self, target: Any, guard: Downstream) -> None:
        self._target = target
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if callable(attribute):
            return functools.partial(self._guard.call_with_retry, attribute)
        return Guarded(attribute, self._guard)
