"""The Redis sink: invalidate cache keys with UNLINK, one pipelined round trip per Redis node.

One job per module: ``slots`` (which keys go together, pure), ``unlink`` (the UNLINKs on a
single node or a Redis Cluster), ``client`` (the lazily connected ``RedisHandle``, cluster
detection, connection options), ``errors`` (failures naming the node). Here: ``invalidate``,
``CacheSink`` (the port) and ``make_client``, and every name other code imports from
``syncer.sinks.cache``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from syncer.config import RedisConfig
from syncer.sinks.cache.client import (
    RedisHandle,
    _connect,
    _options,
    _without_database,
    is_cluster_client,
)
from syncer.sinks.cache.errors import E, _cluster_setup_error, _naming_node, log
from syncer.sinks.cache.slots import (
    UNLINK_CHUNK,
    ReplicaWait,
    Unlink,
    _slot_function,
    key_slot,
    unlinks_by_slot,
)
from syncer.sinks.cache.unlink import (
    MAX_REDIRECT_ROUNDS,
    _check_replicas,
    _invalidate_cluster,
    _invalidate_node,
    _node_name,
    _plan_nodes,
    _read_replies,
    _refresh_slot_map,
    _seed_name,
    _send_to_nodes,
    _unlink_replies,
    _write_commands,
)
from syncer.sinks.resilience import Deadline, Downstream

__all__ = [
    "MAX_REDIRECT_ROUNDS",
    "UNLINK_CHUNK",
    "CacheSink",
    "E",
    "RedisHandle",
    "ReplicaWait",
    "Unlink",
    "_check_replicas",
    "_cluster_setup_error",
    "_connect",
    "_invalidate_cluster",
    "_invalidate_node",
    "_naming_node",
    "_node_name",
    "_options",
    "_plan_nodes",
    "_read_replies",
    "_refresh_slot_map",
    "_seed_name",
    "_send_to_nodes",
    "_slot_function",
    "_unlink_replies",
    "_without_database",
    "_write_commands",
    "invalidate",
    "is_cluster_client",
    "key_slot",
    "log",
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
        return _invalidate_cluster(client, keys, wait)
    return _invalidate_node(client, sorted(keys), wait)


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
