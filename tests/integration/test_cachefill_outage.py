"""LeasedCache while Redis is down or stops answering: reads degrade to the loader, never fail.

Redis is cut for real: a client pointed at a closed loopback port, a socket that accepts and never
answers, or the TCP fault proxy stopped between the lease and the fill.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from syncer.client.cachefill import AsyncLeasedCache, Lease, LeasedCache, decode_entry
from tests.integration.conftest import REDIS_URL, free_port
from tests.integration.faults import TcpFaultProxy, redis_proxy

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.25  # the socket timeouts docs/cache-consistency.md tells readers to set
# Each failed Redis call costs at most one timeout (no client retries): the bound asserted.
BOUND_S = 1.0


def reader_client(port: int) -> redis.Redis:
    """A reader's client built as docs/cache-consistency.md says: timeouts set, no retries."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def async_reader_client(port: int, cluster: bool = False) -> Any:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "socket_connect_timeout": TIMEOUT_S,
        "socket_timeout": TIMEOUT_S,
        "retry": AsyncRetry(NoBackoff(), 0),
    }
    if cluster:
        return redis.asyncio.RedisCluster(**settings)
    return redis.asyncio.Redis(**settings)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose listener accepts connections (the kernel does) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.fixture
def proxy() -> Iterator[TcpFaultProxy]:
    with redis_proxy(REDIS_URL) as running:
        yield running


@pytest.fixture
def key(direct: redis.Redis) -> Iterator[str]:
    name = f"cachefill-outage:{uuid.uuid4().hex}"
    yield name
    direct.unlink(name)


def test_unreachable_redis_serves_the_loaders_value(key: str) -> None:
    """With Redis refusing connections, get_or_fill returns the loader's value and counts it."""
    cache = LeasedCache(reader_client(free_port()))
    started = time.monotonic()
    assert cache.get_or_fill(key, lambda: b"from the table") == b"from the table"
    assert time.monotonic() - started < BOUND_S
    counters = cache.counters()
    assert (counters.redis_errors, counters.fills_stored, counters.hits) == (1, 0, 0)


def test_redis_that_stops_answering_costs_one_socket_timeout(silent_port: int, key: str) -> None:
    """A Redis that accepts but never answers costs the client's socket timeout, then the load."""
    cache = LeasedCache(reader_client(silent_port))
    started = time.monotonic()
    assert cache.get_or_fill(key, lambda: "v") == b"v"
    elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.9 <= elapsed < BOUND_S
    assert cache.counters().redis_errors == 1


def test_redis_lost_between_lease_and_fill_keeps_the_loaded_value(
    proxy: TcpFaultProxy, direct: redis.Redis, key: str
) -> None:
    """A fill that fails because Redis went away still returns the value the loader read."""
    cache = LeasedCache(reader_client(proxy.port))

    def loader() -> bytes:
        proxy.set_down(True)  # Redis becomes unreachable while the item is loaded
        return b"loaded"

    started = time.monotonic()
    assert cache.get_or_fill(key, loader) == b"loaded"
    assert time.monotonic() - started < BOUND_S
    counters = cache.counters()
    assert (counters.misses, counters.redis_errors, counters.fills_stored) == (1, 1, 0)
    # the lease marker was left behind: it expires by itself (lease_ttl_ms), no value was stored
    held = direct.get(key)
    assert held is not None
    assert decode_entry(held) is None


def test_a_loader_error_during_an_outage_propagates_as_itself(
    proxy: TcpFaultProxy, key: str
) -> None:
    """When the loader fails and Redis is gone, the loader's error reaches the caller."""
    cache = LeasedCache(reader_client(proxy.port))

    def loader() -> bytes:
        proxy.set_down(True)
        raise LookupError("table unavailable")

    with pytest.raises(LookupError, match="table unavailable"):
        cache.get_or_fill(key, loader)
    assert cache.counters().redis_errors == 1  # the lease could not be given back


def test_redis_back_after_an_outage_is_used_again(
    proxy: TcpFaultProxy, direct: redis.Redis, key: str
) -> None:
    """The same cache object caches again once Redis answers again."""
    cache = LeasedCache(reader_client(proxy.port))
    proxy.set_down(True)
    assert cache.get_or_fill(key, lambda: b"v1") == b"v1"
    proxy.set_down(False)
    assert cache.get_or_fill(key, lambda: b"v2") == b"v2"
    entry = decode_entry(direct.get(key) or b"")
    assert entry is not None
    assert entry.value == b"v2"
    assert cache.counters().redis_errors == 1


@pytest.mark.parametrize("ttl_s", [0, -5, float("nan"), float("inf"), 0.0001])
def test_a_bad_ttl_is_refused_before_the_loader_runs(
    direct: redis.Redis, key: str, ttl_s: float
) -> None:
    """A bad ttl_s raises before any load or lease: the next reader is not kept waiting."""
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))
    calls: list[int] = []

    def loader() -> bytes:
        calls.append(1)
        return b"v"

    with pytest.raises(ValueError, match="ttl_s"):
        cache.get_or_fill(key, loader, ttl_s=ttl_s)
    assert calls == []
    assert direct.get(key) is None  # no lease marker stranded
    assert isinstance(cache.get(key), Lease)


@pytest.mark.parametrize("negative_ttl_s", [-1, float("nan"), 0.0001])
def test_a_bad_negative_ttl_is_refused_when_the_cache_is_built(negative_ttl_s: float) -> None:
    """negative_ttl_s is 0 (cache no absence) or a valid TTL, checked up front."""
    with pytest.raises(ValueError, match="negative_ttl_s must be a positive number"):
        LeasedCache(redis.Redis.from_url(REDIS_URL), negative_ttl_s=negative_ttl_s)


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
def test_async_unreachable_redis_serves_the_loaders_value(key: str, cluster: bool) -> None:
    """AsyncLeasedCache over an unreachable Redis (or cluster) returns the loader's value."""

    async def scenario() -> None:
        client = async_reader_client(free_port(), cluster=cluster)
        try:
            cache = AsyncLeasedCache(client)

            async def load() -> bytes:
                return b"from the table"

            started = time.monotonic()
            assert await cache.get_or_fill(key, load) == b"from the table"
            assert time.monotonic() - started < BOUND_S
            assert cache.counters().redis_errors == 1
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_async_redis_lost_between_lease_and_fill_keeps_the_value(
    proxy: TcpFaultProxy, key: str
) -> None:
    """The async fill that fails because Redis went away still returns the loaded value."""

    async def scenario() -> None:
        client = async_reader_client(proxy.port)
        try:
            cache = AsyncLeasedCache(client)

            async def load() -> bytes:
                proxy.set_down(True)
                return b"loaded"

            assert await cache.get_or_fill(key, load) == b"loaded"
            assert cache.counters().redis_errors == 1
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_async_bad_ttl_is_refused_before_the_loader_runs(key: str) -> None:
    """AsyncLeasedCache refuses a bad ttl_s before awaiting the loader."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            cache = AsyncLeasedCache(client)

            async def load() -> bytes:
                raise AssertionError("the loader must not run")

            with pytest.raises(ValueError, match="ttl_s"):
                await cache.get_or_fill(key, load, ttl_s=0)
            assert await client.get(key) is None
        finally:
            await client.aclose()

    asyncio.run(scenario())
