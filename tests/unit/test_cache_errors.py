"""Redis Cluster failures keep the type resilience.classify() decides by, and name the node."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from syncer.sinks.cache import Unlink
from syncer.sinks.cache.errors import _cluster_setup_error, _naming_node
from syncer.sinks.cache.unlink import _unlink_replies
from syncer.sinks.resilience import ErrorKind, classify


def _wrapped(cause: Exception) -> redis_errors.RedisClusterException:
    """What redis-py raises when no seed node could be used: the last node's error as cause."""
    try:
        raise redis_errors.RedisClusterException("Redis Cluster cannot be connected") from cause
    except redis_errors.RedisClusterException as error:
        return error


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (redis_errors.AuthenticationError("invalid username-password pair"), ErrorKind.FATAL),
        (redis_errors.ConnectionError("Error 111 connecting"), ErrorKind.TRANSIENT),
        (redis_errors.TimeoutError("Timeout connecting"), ErrorKind.TRANSIENT),
    ],
)
def test_a_cluster_that_cannot_be_reached_is_classified_by_its_cause(
    cause: Exception, kind: ErrorKind
) -> None:
    """A wrong password stays fatal; an unreachable seed becomes transient (not the wrapper's fatal)."""
    translated = _cluster_setup_error(_wrapped(cause), "10.0.0.1:6379")
    assert classify(translated) is kind
    assert "10.0.0.1:6379" in str(translated)


def test_uncovered_slots_are_transient_like_clusterdown() -> None:
    """A slot map with holes (a failover under way) is retried, not reported as fatal."""
    error = redis_errors.RedisClusterException("All slots are not covered after query")
    assert classify(_cluster_setup_error(error, "seed:6379")) is ErrorKind.TRANSIENT


def test_naming_the_node_keeps_the_error_type_and_does_not_repeat_it() -> None:
    """The message gains the node once; the class (which decides retries) is unchanged."""
    error = _naming_node(redis_errors.TimeoutError("Timeout reading from socket"), "h:7001")
    assert isinstance(error, redis_errors.TimeoutError)
    assert str(error) == "Redis node h:7001: Timeout reading from socket"
    again = _naming_node(error, "h:7001")
    assert str(again).count("h:7001") == 1


def test_asking_replies_are_dropped_and_an_asking_error_stands_for_its_unlink() -> None:
    """A node's replies map back to its UNLINKs, skipping the OK of each ASKING."""
    commands = [Unlink(1, ("a",)), Unlink(2, ("b",), ask_node="h:1"), Unlink(3, ("c",))]
    assert _unlink_replies(commands, [1, b"OK", 0, 1]) == [1, 0, 1]
    refused = redis_errors.ResponseError("ERR asking refused")
    assert _unlink_replies(commands, [1, refused, 0, 1]) == [1, refused, 1]
