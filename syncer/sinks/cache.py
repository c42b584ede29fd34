"""The Redis sink: invalidate cache keys with UNLINK, one pipelined round trip per Redis node."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncer.config import RedisConfig, cluster_database_message, redis_database
from syncer.errors import ConfigError

UNLINK_CHUNK = 1000
# Rounds of MOVED/ASK/TRYAGAIN answers one invalidation follows before it gives up (the
# retry policy then tries again later with a fresh slot map).
MAX_REDIRECT_ROUNDS = 5

E = TypeVar("E", bound=BaseException)
log = logging.getLogger(__name__)


# --- the pure part: which keys go together --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """Ask each primary to confirm its UNLINKs reached ``replicas`` replicas (``WAIT``).

    A primary answers an UNLINK before its replicas have it; if it dies then, the promoted
    replica still holds the key. With a wait, a record is acknowledged only once the
    invalidation also reached that many replicas (``[redis] wait_replicas``).
    """

    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Unlink:
    """One ``UNLINK`` of keys that share a hash slot, possibly redirected by an ASK answer."""

    slot: int
    keys: tuple[str, ...]
    ask_node: str | None = None  # "host:port" to send ASKING + UNLINK to, during a migration


def unlinks_by_slot(keys: Iterable[str], slot_of: Callable[[str], int]) -> list[Unlink]:
    """The keys grouped by hash slot, in slot order, each group cut into UNLINK_CHUNK keys.

    A multi-key command whose keys are in different slots fails with CROSSSLOT, even in a
    pipeline (REFERENCE.md), so every command here stays inside one slot.
    """
    by_slot: dict[int, list[str]] = defaultdict(list)
    for key in sorted(set(keys)):
        by_slot[slot_of(key)].append(key)
    return [
        Unlink(slot, tuple(slot_keys[start : start + UNLINK_CHUNK]))
        for slot, slot_keys in sorted(by_slot.items())
        for start in range(0, len(slot_keys), UNLINK_CHUNK)
    ]


def key_slot(key: str) -> int:
    """The cluster hash slot of ``key``: CRC16 of its hash tag (or whole key) mod 16384."""
    from redis.crc import key_slot as crc16_slot

    return int(crc16_slot(key.encode("utf-8")))


def _slot_function() -> Callable[[str], int]:
    """``key_slot`` with redis-py's CRC16 looked up once (it runs once per key)."""
    from redis.crc import key_slot as crc16_slot

    return lambda key: int(crc16_slot(key.encode("utf-8")))


# --- the shell: single node or cluster --------------------------------------------------------


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


def is_cluster_client(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _invalidate_node(client: Any, ordered: Sequence[str], wait: ReplicaWait | None) -> int:
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


def _invalidate_cluster(client: Any, keys: Collection[str], wait: ReplicaWait | None) -> int:
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


# --- building the client ----------------------------------------------------------------------


class RedisHandle:
    """The configured Redis, a single node or a cluster, connected on first use.

    ``[redis] cluster = "auto"`` asks the server (``INFO cluster``) on the first call, so a
    cold start never waits on Redis and an unreachable Redis fails a batch (retried), not
    the start-up. Other attributes are forwarded to the client (``get``, ``hset``, ...).
    """

    def __init__(self, settings: RedisConfig, password: str | None = None) -> None:
        self.settings = settings
        self._password = password
        self._client: Any = None
        self._refused: ConfigError | None = None  # what the first connection found wrong
        self._lock = threading.Lock()
        # WAIT must answer before the socket timeout fires: half of it.
        self.replica_wait = (
            ReplicaWait(settings.wait_replicas, max(1, int(settings.timeout_s * 500)))
            if settings.wait_replicas
            else None
        )

    @property
    def is_connected(self) -> bool:
        return self._client is not None

    def connected(self) -> Any:
        """The redis-py client (``Redis`` or ``RedisCluster``), built on the first call."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._refused is not None:
                raise self._refused  # the configuration cannot change: no new connection
            if self._client is None:
                try:
                    self._client = _connect(self.settings, self._password)
                except ConfigError as error:
                    self._refused = error
                    raise
            return self._client

    @property
    def is_cluster(self) -> bool:
        return is_cluster_client(self.connected())

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.connected(), name)


def make_client(settings: RedisConfig, password: str | None = None) -> RedisHandle:
    """The Redis of ``settings``: single node or cluster (``[redis] cluster``), lazily built."""
    return RedisHandle(settings, password)


def _options(settings: RedisConfig, password: str | None) -> dict[str, Any]:
    """Connection options both client kinds share: explicit timeouts, TLS CA, ACL user."""
    options: dict[str, Any] = {
        "socket_timeout": settings.timeout_s,
        "socket_connect_timeout": settings.timeout_s,
        "retry_on_timeout": False,
    }
    if settings.username:
        options["username"] = settings.username
    if password is not None:
        options["password"] = password
    if settings.ca_certs and settings.url.startswith("rediss://"):
        options["ssl_ca_certs"] = settings.ca_certs
    return options


def _without_database(url: str) -> str:
    """``url`` selecting no database (no path, no ``db`` query): what detection connects to."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit((parts.scheme, parts.netloc, "", query, parts.fragment))


def _connect(settings: RedisConfig, password: str | None) -> Any:
    """A redis-py client with its own retries off (REFERENCE.md): our retry policy retries.

    ``rediss://`` URLs use TLS (verified against ``ca_certs`` when given); ``username`` and
    the password select a Redis ACL user.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = _options(settings, password)
    parts = urlsplit(settings.url)
    seed = f"{parts.hostname}:{parts.port or 6379}"
    database = redis_database(settings.url)
    if settings.cluster == "auto":
        # Detection connects without the URL's database: a cluster node refuses SELECT, which
        # would fail every batch with a redis error instead of the message below.
        probe = redis.Redis.from_url(
            _without_database(settings.url), retry=Retry(NoBackoff(), 0), **options
        )
        try:
            enabled = bool(probe.info("cluster").get("cluster_enabled"))
        except redis.exceptions.RedisError as error:
            probe.close()
            raise _naming_node(error, seed) from None
        if not enabled and database == 0:
            return probe
        probe.close()
        if not enabled:
            return redis.Redis.from_url(settings.url, retry=Retry(NoBackoff(), 0), **options)
    elif settings.cluster is False:
        return redis.Redis.from_url(settings.url, retry=Retry(NoBackoff(), 0), **options)
    if database != 0:
        # A ConfigError is fatal (resilience.classify): reported, never retried in a loop.
        raise ConfigError(cluster_database_message(database))
    try:
        # retry=0: redis-py re-sends a failed command (after a topology refresh) this many
        # times by itself; our retry policy does that, with the breaker counting attempts.
        return redis.RedisCluster.from_url(
            settings.url, retry=Retry(NoBackoff(), 0), reinitialize_steps=1, **options
        )
    except redis.exceptions.RedisClusterException as error:
        raise _cluster_setup_error(error, seed) from None
