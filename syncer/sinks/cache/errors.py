"""Redis failures as syncer reports them: naming the node, and cluster set-up errors given back
their cause's type (so resilience.classify retries what is transient)."""

from __future__ import annotations

import logging
from typing import TypeVar

E = TypeVar("E", bound=BaseException)
log = logging.getLogger("syncer.sinks.cache")  # the name logs and log filters know


def _naming_node(error: E, node: str) -> E:
    """``error`` itself (its type decides retries: resilience.classify), message naming ``node``.

    Also one log line with the node as a field (``redis_node`` in JSON logs), so a CloudWatch
    Logs metric filter can count failures per node.
    """
    message = str(error)
    # redis-py 8.2 names the node in some messages ("Timeout reading from host:port"); the
    # prefix stays anyway, so every failure reads the same and log filters can match it.
    if not message.startswith(f"Redis node {node}: "):
        error.args = (f"Redis node {node}: {message}",)
    log.warning(
        "Redis node %s failed: %s",
        node,
        type(error).__name__,
        extra={"redis_node": node, "error_class": type(error).__name__},
    )
    return error


def _cluster_setup_error(error: Exception, seed: str) -> Exception:
    """redis-py wraps every failure to reach a cluster in RedisClusterException (fatal for
    resilience.classify); give back the cause's type (auth stays fatal, an unreachable node
    is transient), with the node in the message."""
    from redis import exceptions as redis_errors

    cause = error.__cause__
    if isinstance(cause, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return _naming_node(cause, seed)
    if isinstance(cause, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return redis_errors.ConnectionError(f"no Redis Cluster node answered ({seed}): {cause}")
    if isinstance(error, redis_errors.RedisClusterException) and "not covered" in str(error):
        return redis_errors.ClusterDownError(f"Redis Cluster ({seed}): {error}")
    return error
