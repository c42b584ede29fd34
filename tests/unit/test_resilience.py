"""One classifier decides how each downstream error is handled; retries wrap the breaker."""

from __future__ import annotations

import threading
from pathlib import Path

import pybreaker
import pytest
import redis.exceptions as redis_errors
from botocore.exceptions import ClientError
from opensearchpy import exceptions as os_errors

from syncer.config import ResilienceConfig
from syncer.errors import (
    ConfigError,
    DeadLetterUnavailableError,
    DeadlineExceededError,
    PendingItemsError,
)
from syncer.sinks.resilience import (
    Downstream,
    ErrorKind,
    classify,
    failure_table_markdown,
)

FAST = ResilienceConfig(
    initial_backoff_s=0.001, max_backoff_s=0.002, max_attempts=4, breaker_fail_max=50
)


def _aws_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Query",
    )


class FlakyFunction:
    """A fake downstream call: raises the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (os_errors.ConnectionError("N/A", "refused", None), ErrorKind.TRANSIENT),
        (os_errors.ConnectionTimeout("TIMEOUT", "read timed out", None), ErrorKind.TRANSIENT),
        (os_errors.TransportError(429, "too_many_requests", {}), ErrorKind.TRANSIENT),
        (os_errors.TransportError(503, "unavailable", {}), ErrorKind.TRANSIENT),
        (os_errors.TransportError(400, "illegal_argument_exception", {}), ErrorKind.PERMANENT),
        (os_errors.TransportError(401, "security_exception", {}), ErrorKind.FATAL),
        (pybreaker.CircuitBreakerError("open"), ErrorKind.BREAKER_OPEN),
        (redis_errors.ConnectionError("Connection refused"), ErrorKind.TRANSIENT),
        (redis_errors.TimeoutError("Timeout reading from socket"), ErrorKind.TRANSIENT),
        (redis_errors.BusyLoadingError("LOADING Redis is loading"), ErrorKind.TRANSIENT),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), ErrorKind.FATAL),
        (_aws_error("ThrottlingException", 400), ErrorKind.TRANSIENT),
        (_aws_error("ProvisionedThroughputExceededException", 400), ErrorKind.TRANSIENT),
        (_aws_error("InternalServerError", 500), ErrorKind.TRANSIENT),
        (_aws_error("AccessDeniedException", 400), ErrorKind.FATAL),
        (TimeoutError("timed out"), ErrorKind.TRANSIENT),
        (ConnectionResetError("reset"), ErrorKind.TRANSIENT),
        (PendingItemsError(2, "429 es_rejected_execution_exception"), ErrorKind.TRANSIENT),
        (ValueError("a bug"), ErrorKind.UNEXPECTED),
        (KeyError("eventName"), ErrorKind.UNEXPECTED),
        (PermissionError(13, "Permission denied"), ErrorKind.FATAL),
        (OSError(28, "No space left on device"), ErrorKind.TRANSIENT),
        (DeadLetterUnavailableError("2 of 10 messages refused"), ErrorKind.TRANSIENT),
        (DeadlineExceededError("0.01s left"), ErrorKind.TRANSIENT),
        (ConfigError("bad"), ErrorKind.FATAL),
    ],
    ids=[
        "opensearch-connection",
        "opensearch-timeout",
        "opensearch-429",
        "opensearch-503",
        "opensearch-400",
        "opensearch-401",
        "breaker-open",
        "redis-connection",
        "redis-timeout",
        "redis-loading",
        "redis-wrongtype",
        "aws-throttling",
        "aws-throughput",
        "aws-internal",
        "aws-access-denied",
        "builtin-timeout",
        "builtin-connection-reset",
        "pending-items",
        "programming-error",
        "decoder-bug",
        "permission-denied",
        "disk-full",
        "sqs-partial",
        "deadline",
        "config",
    ],
)
def test_classify(error: BaseException, kind: ErrorKind) -> None:
    """Each downstream error falls into the kind the failure table documents."""
    # given a downstream error
    # when it is classified
    # then it has its documented kind
    assert classify(error) is kind


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.AuthenticationError("invalid username-password pair"),
        redis_errors.AuthorizationError("NOPERM this user has no permissions"),
    ],
    ids=["authentication", "authorization"],
)
def test_redis_auth_errors_are_fatal(error: BaseException) -> None:
    """Redis authentication and permission errors are fatal, as the failure table says, not retried."""
    # given a redis auth error
    # when it is classified
    # then it is fatal
    assert classify(error) is ErrorKind.FATAL


def test_transient_error_is_retried_until_success() -> None:
    """A call failing twice with a transient error is retried and its result returned."""
    # given a call that fails twice with a connection error, then succeeds
    call = FlakyFunction(
        os_errors.ConnectionError("N/A", "refused", None), redis_errors.TimeoutError("slow")
    )
    downstream = Downstream("opensearch", FAST)
    # when it is called with retry
    result = downstream.call_with_retry(call)
    # then it succeeded on the third attempt
    assert result == "done"
    assert call.calls == 3


def test_transient_error_gives_up_after_max_attempts() -> None:
    """A call that keeps failing transiently is tried max_attempts times, then its error raised."""
    # given a call that always times out
    call = FlakyFunction(*[TimeoutError(f"attempt {n}") for n in range(10)])
    downstream = Downstream("redis", FAST)
    # when it is called with retry
    # then the last error is raised as itself after four attempts
    with pytest.raises(TimeoutError, match="attempt 3"):
        downstream.call_with_retry(call)
    assert call.calls == FAST.max_attempts


def test_permanent_error_is_not_retried() -> None:
    """A permanent error is raised at once, without a second attempt."""
    # given a call rejected with HTTP 400
    call = FlakyFunction(os_errors.TransportError(400, "mapper_parsing_exception", {}))
    downstream = Downstream("opensearch", FAST)
    # when it is called with retry
    # then it is raised after one attempt
    with pytest.raises(os_errors.TransportError):
        downstream.call_with_retry(call)
    assert call.calls == 1


def test_open_breaker_is_never_retried() -> None:
    """With the breaker open the call fails fast and the function is never run."""
    # given a downstream whose breaker is open
    call = FlakyFunction()
    downstream = Downstream("opensearch", FAST)
    downstream.breaker.open()
    # when it is called with retry
    # then it fails at once without running the function
    with pytest.raises(pybreaker.CircuitBreakerError):
        downstream.call_with_retry(call)
    assert call.calls == 0


def test_breaker_that_trips_stops_the_retries() -> None:
    """When failures open the breaker mid-retry, no further attempt is made."""
    # given a breaker that opens after two failures and a call that always fails
    settings = ResilienceConfig(
        initial_backoff_s=0.001, max_backoff_s=0.002, max_attempts=10, breaker_fail_max=2
    )
    call = FlakyFunction(*[ConnectionResetError("reset")] * 10)
    downstream = Downstream("redis", settings)
    # when it is called with retry
    # then the breaker error ends it after the second attempt
    with pytest.raises(pybreaker.CircuitBreakerError):
        downstream.call_with_retry(call)
    assert call.calls == 2
    assert downstream.breaker.current_state == pybreaker.STATE_OPEN


def test_permanent_errors_do_not_open_the_breaker() -> None:
    """A 4xx about the request itself counts as success for the breaker."""
    # given a breaker that would open after one failure
    settings = ResilienceConfig(
        initial_backoff_s=0.001, max_backoff_s=0.002, max_attempts=3, breaker_fail_max=1
    )
    downstream = Downstream("opensearch", settings)
    # when a call is rejected with HTTP 400
    with pytest.raises(os_errors.TransportError):
        downstream.call_with_retry(FlakyFunction(os_errors.TransportError(400, "bad", {})))
    # then the breaker stays closed
    assert downstream.breaker.current_state == pybreaker.STATE_CLOSED


def test_calls_through_one_guard_run_side_by_side() -> None:
    """A call in progress does not hold up another call through the same guard (pybreaker's
    own ``call`` holds its lock for the whole call, which serialised every thread's requests)."""
    # given a call on another thread that waits for an event set by a second call
    downstream = Downstream("opensearch", FAST)
    started, released = threading.Event(), threading.Event()
    seen: list[bool] = []

    def wait_for_release() -> None:
        started.set()
        seen.append(released.wait(timeout=2))

    waiter = threading.Thread(target=downstream.call, args=(wait_for_release,))
    waiter.start()
    assert started.wait(timeout=2)
    # when the second call runs while the first one waits
    downstream.call(released.set)
    waiter.join()
    # then the first call saw the release instead of timing out
    assert seen == [True]


def test_the_breaker_still_counts_failures_and_opens() -> None:
    """Failures counted outside pybreaker's lock still open the breaker at fail_max."""
    settings = ResilienceConfig(breaker_fail_max=2)
    downstream = Downstream("redis", settings)
    for _ in range(2):
        with pytest.raises((ConnectionResetError, pybreaker.CircuitBreakerError)):
            downstream.call(FlakyFunction(ConnectionResetError("reset")))
    assert downstream.breaker.current_state == pybreaker.STATE_OPEN
    with pytest.raises(pybreaker.CircuitBreakerError):
        downstream.call(lambda: None)


def test_operations_failure_table_is_the_codes() -> None:
    """docs/operations.md's "How failures are handled" table is exactly ``FAILURE_TABLE`` (one source)."""
    # given the operations page and the code's table
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    # then the page holds the table as the code renders it
    assert failure_table_markdown() in page
