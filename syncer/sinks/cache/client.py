"""The Redis client: a single node or a cluster (``[redis] cluster``, detected on first use),
its connection options, built lazily behind ``RedisHandle``."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncer.config import RedisConfig, cluster_database_message, redis_database
from syncer.errors import ConfigError
from syncer.sinks.cache.errors import _cluster_setup_error, _naming_node
from syncer.sinks.cache.slots import ReplicaWait


def is_cluster_client(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


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
