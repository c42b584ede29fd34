"""The Redis sink: invalidate cache keys with UNLINK, one pipelined round trip per Redis node.

One job per module: ``slots`` (which keys go together, pure), ``unlink`` (the UNLINKs on a
single node or a Redis Cluster), ``client`` (the lazily connected ``RedisHandle``, cluster
detection, connection options), ``errors`` (failures naming the node). Here: ``invalidate``,
``CacheSink`` (the port) and ``make_client``, and the few names other code imports from
``syncer.sinks.cache`` (``__all__``); no module's private helpers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from syncer.config import RedisConfig
from syncer.sinks.cache.client import RedisHandle, is_cluster_client
from syncer.sinks.cache.slots import UNLINK_CHUNK, ReplicaWait, Unlink, key_slot, unlinks_by_slot
from syncer.sinks.cache.unlink import MAX_REDIRECT_ROUNDS, invalidate_cluster, invalidate_node
from syncer.sinks.resilience import Deadline, Downstream

# The package's public face; each module's own helpers are imported from that module.
__all__ = [
    "MAX_REDIRECT_ROUNDS",
    "UNLINK_CHUNK",
    "CacheSink",
    "RedisHandle",
    "ReplicaWait",
    "Unlink",
    "invalidate",
    "is_cluster_client",
    "key_slot",
    "make_client",
    "unlinks_by_slot",
]


def invalidate(client: Any, keys: Collection[str]) -> int:
    """Delete ``keys`` and return how many existed.

    UNLINK frees memory off Redis's main thread, and it is idempotent, so a failed attempt
    may be sent again as a whole. On a Redis Cluster each node gets one pipeline of UNLINKs,
    one per hash slot, all nodes in one pass; a failure names the node.
    """
    if not keys:
        return 0
    wait = None
    if isinstance(client, RedisHandle):
        wait = client.replica_wait
        client = client.connected()
    if is_cluster_client(client):
        return invalidate_cluster(client, keys, wait)
    return invalidate_node(client, sorted(keys), wait)


class CacheSink:
    """The cache as the pipeline and the commands see it: invalidations through the guard."""

    __slots__ = ("guard", "handle")

    def __init__(self, handle: RedisHandle, guard: Downstream) -> None:
        self.handle = handle
        self.guard = guard

    def invalidate(self, keys: Collection[str], deadline: Deadline | None = None) -> int:
        """Delete ``keys`` (``invalidate``), retried and broken by the guard; how many existed."""
        if not keys:
            return 0
        existed: int = self.guard.call_with_retry(invalidate, self.handle, keys, deadline=deadline)
        return existed

    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """The raw value of each key (None where absent), in one pipeline, through the guard."""
        if not keys:
            return []

        def get_all() -> list[bytes | None]:
            pipeline = self.handle.pipeline(transaction=False)
            for key in keys:
                pipeline.get(key)
            return [None if reply is None else bytes(reply) for reply in pipeline.execute()]

        values: list[bytes | None] = self.guard.call_with_retry(get_all)
        return values


def make_client(settings: RedisConfig, password: str | None = None) -> RedisHandle:
    """The Redis of ``settings``: single node or cluster (``[redis] cluster``), lazily built."""
    return RedisHandle(settings, password)
