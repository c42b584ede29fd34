"""UNLINKs on the wire: one pipeline on a single node; on a Redis Cluster one pipeline per node,
one UNLINK per hash slot, all nodes in one pass, MOVED/ASK/TRYAGAIN followed."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from syncer.sinks.cache.errors import _cluster_setup_error, _naming_node
from syncer.sinks.cache.slots import (
    UNLINK_CHUNK,
    ReplicaWait,
    Unlink,
    _slot_function,
    unlinks_by_slot,
)

# Rounds of MOVED/ASK/TRYAGAIN answers one invalidation follows before it gives up (the
# retry policy then tries again later with a fresh slot map).
MAX_REDIRECT_ROUNDS = 5


def invalidate_node(client: Any, ordered: Sequence[str], wait: ReplicaWait | None) -> int:
    from redis import exceptions as redis_errors

    pipe = client.pipeline(transaction=False)
    for start in range(0, len(ordered), UNLINK_CHUNK):
        pipe.unlink(*ordered[start : start + UNLINK_CHUNK])
    if wait is not None:
        pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
    try:
        replies = pipe.execute()
        if wait is not None:
            _check_replicas(replies.pop(), wait)
    except redis_errors.RedisError as error:
        _naming_node(error, _node_name(client))
        raise
    return sum(int(removed) for removed in replies)


def _check_replicas(confirmed: object, wait: ReplicaWait) -> None:
    """``WAIT``'s answer: fewer replicas than asked is a (transient) timeout."""
    from redis import exceptions as redis_errors

    if isinstance(confirmed, BaseException):
        raise confirmed
    if not isinstance(confirmed, int) or confirmed < wait.replicas:
        raise redis_errors.TimeoutError(
            f"{confirmed} of {wait.replicas} replica(s) confirmed the UNLINKs "
            f"within {wait.timeout_ms} ms"
        )


def _node_name(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def invalidate_cluster(client: Any, keys: Collection[str], wait: ReplicaWait | None) -> int:
    """One round per topology change: group by node, send every node its pipeline, follow
    MOVED (refresh the slot map) and ASK (ASKING to the importing node), then go again for
    the commands that were redirected. Any other failure refreshes the slot map, so the next
    attempt finds a promoted replica, and raises naming the node."""
    from redis import exceptions as redis_errors

    pending = unlinks_by_slot(keys, _slot_function())
    removed = 0
    for _ in range(MAX_REDIRECT_ROUNDS):
        by_node = _plan_nodes(client, pending)
        replies = _send_to_nodes(client, by_node, wait)
        pending = []
        refresh = migrating = False
        failures: list[tuple[str, BaseException]] = []
        for node, commands in by_node.items():
            outcome = replies[node]
            if isinstance(outcome, BaseException):
                failures.append((node, _naming_node(outcome, node)))
                continue
            if wait is not None:
                try:
                    _check_replicas(outcome.pop(), wait)
                except redis_errors.RedisError as error:
                    failures.append((node, _naming_node(error, node)))
                    continue
            for command, reply in zip(commands, _unlink_replies(commands, outcome), strict=True):
                if isinstance(reply, redis_errors.MovedError):
                    refresh = True
                    pending.append(replace(command, ask_node=None))
                elif isinstance(reply, redis_errors.AskError):
                    pending.append(replace(command, ask_node=f"{reply.host}:{reply.port}"))
                elif isinstance(reply, redis_errors.TryAgainError):
                    # Some keys of a migrating slot moved, some not: ask again key by key.
                    migrating = True
                    pending.extend(Unlink(command.slot, (key,)) for key in command.keys)
                elif isinstance(reply, BaseException):
                    failures.append((node, _naming_node(reply, node)))
                else:
                    removed += int(reply)
        if failures:
            failed_node, failure = failures[0]
            others = sorted({node for node, _ in failures} - {failed_node})
            if others:
                failure.args = (f"{failure} (failed too: {', '.join(others)})",)
            _refresh_slot_map(client, failure, failed_node)
            raise failure
        if not pending:
            return removed
        if refresh:
            _refresh_slot_map(client, None)
        if migrating:
            time.sleep(0.01)  # TRYAGAIN: the migration of the slot's keys is under way
    raise redis_errors.TryAgainError(
        f"Redis Cluster still redirected {len(pending)} UNLINK(s) after {MAX_REDIRECT_ROUNDS} "
        f"rounds (slots {', '.join(str(c.slot) for c in pending[:5])}); the topology is changing"
    )


def _plan_nodes(client: Any, commands: Sequence[Unlink]) -> dict[str, list[Unlink]]:
    """The commands by the node that serves their slot (or that an ASK answer named)."""
    from redis import exceptions as redis_errors

    by_node: dict[str, list[Unlink]] = defaultdict(list)
    # The slot map as redis-py keeps it, {slot: [primary, replicas...]}, read directly:
    # get_node_from_slot() costs ~4 us a call (a deprecation wrapper), and it runs per slot.
    slots = client.nodes_manager.slots_cache
    for command in commands:
        if command.ask_node is not None:
            by_node[command.ask_node].append(command)
            continue
        nodes = slots.get(command.slot)
        if not nodes:
            # No primary serves the slot (for now): transient, like CLUSTERDOWN.
            raise redis_errors.ClusterDownError(f"hash slot {command.slot} is not served")
        by_node[nodes[0].name].append(command)
    return by_node


def _send_to_nodes(
    client: Any, by_node: Mapping[str, Sequence[Unlink]], wait: ReplicaWait | None = None
) -> dict[str, list[Any] | BaseException]:
    """Each node's replies (a reply may be an error), or the error that failed its pipeline.

    One pass, as redis-py's own cluster pipeline does it: every node's commands are written
    first, then the replies are read node by node, so the nodes work at the same time. The
    commands are packed and read on the connection itself: redis-py's Pipeline object costs
    ~10 us per command, more than the round trip when a batch has a thousand slots.
    """
    from redis import exceptions as redis_errors

    outcomes: dict[str, list[Any] | BaseException] = {}
    sent: dict[str, tuple[Any, Any, int]] = {}  # node -> (pool, connection, replies due)
    read: set[str] = set()  # nodes whose replies were all read: their connection is clean
    try:
        for node_name, commands in by_node.items():
            try:
                sent[node_name] = _write_commands(client, node_name, commands, wait)
            except redis_errors.RedisError as error:
                outcomes[node_name] = error
        for node_name, (_, connection, due) in sent.items():
            try:
                outcomes[node_name] = _read_replies(connection, due)
                read.add(node_name)
            except redis_errors.RedisError as error:
                outcomes[node_name] = error
    finally:
        for node_name, (pool, connection, _) in sent.items():
            if node_name not in read:
                connection.disconnect()  # replies may be left unread: never reuse it
            pool.release(connection)
    return outcomes


def _write_commands(
    client: Any, node_name: str, commands: Sequence[Unlink], wait: ReplicaWait | None
) -> tuple[Any, Any, int]:
    """Send a node its UNLINKs (each after ASKING when an ASK answer sent it there), then
    the ``WAIT`` for its replicas when asked."""
    from redis import exceptions as redis_errors

    host, _, port = node_name.rpartition(":")
    node = client.nodes_manager.get_node(host=host, port=int(port))
    if node is None:  # an ASK named a node the slot map does not know yet
        raise redis_errors.TryAgainError(f"unknown Redis Cluster node {node_name}")
    pool = client.get_redis_connection(node).connection_pool
    connection = pool.get_connection()  # connects (TLS, AUTH) when the pool has none idle
    wire: list[tuple[str, ...]] = []
    for command in commands:
        if command.ask_node is not None:
            wire.append(("ASKING",))
        wire.append(("UNLINK", *command.keys))
    if wait is not None:
        wire.append(("WAIT", str(wait.replicas), str(wait.timeout_ms)))
    try:
        connection.send_packed_command(connection.pack_commands(wire))
    except BaseException:
        connection.disconnect()
        pool.release(connection)
        raise
    return pool, connection, len(wire)


def _read_replies(connection: Any, due: int) -> list[Any]:
    """``due`` replies; an error reply (MOVED, ASK, ...) is a value, read like the others."""
    from redis import exceptions as redis_errors

    replies: list[Any] = []
    for _ in range(due):
        try:
            replies.append(connection.read_response())
        except redis_errors.ResponseError as error:
            replies.append(error)
    return replies


def _unlink_replies(commands: Sequence[Unlink], replies: Sequence[Any]) -> list[Any]:
    """The UNLINK replies of a node's pipeline, without the ASKING replies before some."""
    from redis import exceptions as redis_errors

    out: list[Any] = []
    position = 0
    for command in commands:
        if command.ask_node is not None:
            asking = replies[position]
            position += 1
            if isinstance(asking, BaseException):
                out.append(asking)
                position += 1
                continue
        out.append(replies[position])
        position += 1
    if position != len(replies):
        raise redis_errors.RedisError(f"expected {position} pipeline replies, got {len(replies)}")
    return out


def _refresh_slot_map(
    client: Any, failure: BaseException | None, failed_node: str | None = None
) -> None:
    """Read the slot map again (CLUSTER SLOTS, asking ``failed_node`` last), so that the next
    attempt finds a promoted replica.

    When no node answers, the refresh error is added to ``failure``'s message (``failure`` is
    raised next); without a failure it is raised itself, as a redis ConnectionError (transient).
    """
    from redis import exceptions as redis_errors

    try:
        client.nodes_manager.initialize(last_failed_node_name=failed_node)
    except redis_errors.RedisError as error:
        translated = _cluster_setup_error(error, _seed_name(client))
        if failure is None:
            raise translated from None
        failure.args = (f"{failure}; refreshing the slot map failed too: {translated}",)


def _seed_name(client: Any) -> str:
    return ", ".join(sorted(client.nodes_manager.startup_nodes)) or "?"
