"""LeasedCache's contracts with its callers, on the real Redis: what it refuses, what it degrades."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from syncer.client.cachefill import (
    RESERVED_PREFIX,
    AsyncLeasedCache,
    CorruptEntryError,
    Lease,
    LeasedCache,
)
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def key(direct: redis.Redis) -> Iterator[str]:
    name = f"cachefill-contract:{uuid.uuid4().hex}"
    yield name
    direct.unlink(name)


@pytest.mark.parametrize(
    ("loaded", "type_name"),
    [(5, "int"), ([104, 105], "list"), ({"a": 1}, "dict"), (True, "bool"), (1.5, "float")],
)
def test_a_loader_value_that_is_not_bytes_is_a_type_error_and_nothing_is_stored(
    direct: redis.Redis, key: str, loaded: Any, type_name: str
) -> None:
    """An int or a list was stored as bytes(value) (5 -> five NUL bytes); now a TypeError."""
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))
    with pytest.raises(TypeError, match=rf"the loader's value must be bytes.*not {type_name}"):
        cache.get_or_fill(key, lambda: loaded)
    # the lease was given back: nothing stored, the next reader loads at once
    assert direct.get(key) is None
    assert cache.get_or_fill(key, lambda: b"right") == b"right"


def test_a_str_value_is_stored_as_utf8_and_read_back_as_bytes(key: str) -> None:
    """str is encoded explicitly (UTF-8), the documented choice; the reader gets bytes."""
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))
    assert cache.get_or_fill(key, lambda: "prix: 10 €") == "prix: 10 €".encode()
    assert cache.get_or_fill(key, lambda: "never loaded") == "prix: 10 €".encode()


def test_a_manual_fill_of_an_int_is_a_type_error(direct: redis.Redis, key: str) -> None:
    """fill() checks its value as get_or_fill does, before the script runs."""
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))
    got = cache.get(key)
    assert isinstance(got, Lease)
    with pytest.raises(TypeError, match=r"value must be bytes.*not int"):
        cache.fill(key, got.token, 5)  # type: ignore[arg-type]
    assert direct.get(key).startswith(RESERVED_PREFIX + b"lease:")  # type: ignore[union-attr]


def test_a_corrupt_reserved_value_degrades_to_the_loader_and_is_counted(
    direct: redis.Redis, key: str
) -> None:
    """Bytes behind the reserved prefix that LeasedCache never writes no longer fail every read."""
    direct.set(key, RESERVED_PREFIX + b"value:not-a-time:x", px=60_000)
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))
    assert cache.get_or_fill(key, lambda: b"from the table") == b"from the table"
    assert cache.get_or_fill(key, lambda: b"again") == b"again"
    assert cache.counters().corrupt_entries == 2
    # get, the building block, says what it found
    with pytest.raises(CorruptEntryError, match=r"not a cache entry|milliseconds"):
        cache.get(key)


def test_async_corrupt_value_and_wrong_loader_value(direct: redis.Redis, key: str) -> None:
    """AsyncLeasedCache degrades around a corrupt entry and refuses a non-bytes value the same way."""
    direct.set(key, RESERVED_PREFIX + b"something-else", px=60_000)

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            cache = AsyncLeasedCache(client)

            async def load() -> bytes:
                return b"loaded"

            async def load_int() -> int:
                return 5

            assert await cache.get_or_fill(key, load) == b"loaded"
            assert cache.counters().corrupt_entries == 1
            await client.unlink(key)
            with pytest.raises(TypeError, match="not int"):
                await cache.get_or_fill(key, load_int)  # type: ignore[arg-type]
            assert await client.get(key) is None
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.get_or_fill(b"k", lambda: b"v"), TypeError, "key must be a str"),
        (lambda c: c.get_or_fill("", lambda: b"v"), ValueError, "key must not be empty"),
        (lambda c: c.get_or_fill("k", b"v"), TypeError, "loader must be callable"),
        (lambda c: c.get_or_fill("k", lambda: b"v", ttl_s="300"), TypeError, "ttl_s"),
        (lambda c: c.get_or_fill("k", lambda: b"v", ttl_s=float("nan")), ValueError, "ttl_s"),
        (lambda c: c.get(None), TypeError, "key must be a str"),
        (lambda c: c.fill("k", 42, b"v"), TypeError, "token must be the str of a Lease"),
        (lambda c: c.fill("k", "forged", b"v"), ValueError, "not a lease token"),
        (lambda c: c.release("k", "forged"), ValueError, "not a lease token"),
    ],
)
def test_bad_arguments_are_refused_before_any_redis_command(
    call: Any, error: type[Exception], message: str
) -> None:
    """Every public method checks its arguments first: a client that cannot connect is never used."""

    class NoCommands(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            raise AssertionError(f"a Redis command was sent: {args[:1]}")

    cache = LeasedCache(NoCommands())
    with pytest.raises(error, match=message):
        call(cache)


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"lease_ttl_ms": 0}, ValueError, "lease_ttl_ms must be at least 1"),
        ({"lease_ttl_ms": 1.5}, TypeError, "lease_ttl_ms must be an int"),
        ({"max_wait_ms": -1}, ValueError, "max_wait_ms must be at least 0"),
        ({"max_wait_ms": True}, TypeError, "max_wait_ms must be an int"),
        ({"negative_ttl_s": "30"}, TypeError, "negative_ttl_s must be a number"),
    ],
)
def test_bad_settings_are_refused_when_the_cache_is_built(
    settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    """The constructor names the setting and what it must be."""
    with pytest.raises(error, match=message):
        LeasedCache(redis.Redis.from_url(REDIS_URL), **settings)


def test_a_client_of_the_other_kind_is_refused() -> None:
    """A sync cache over an asyncio client (or the reverse) would hand back coroutines: refused."""
    with pytest.raises(TypeError, match="use AsyncLeasedCache"):
        LeasedCache(redis.asyncio.Redis.from_url(REDIS_URL))
    with pytest.raises(TypeError, match="use LeasedCache"):
        AsyncLeasedCache(redis.Redis.from_url(REDIS_URL))
    with pytest.raises(TypeError, match="redis-py client"):
        LeasedCache(object())


def test_an_async_loader_given_to_the_sync_cache_is_a_clear_error(
    direct: redis.Redis, key: str
) -> None:
    """A coroutine is not a value: the sync cache says to use AsyncLeasedCache, stores nothing."""
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))

    async def load() -> bytes:
        return b"v"

    with pytest.raises(TypeError, match="use AsyncLeasedCache"):
        cache.get_or_fill(key, load)  # type: ignore[arg-type]
    assert direct.get(key) is None


def test_what_get_or_fill_serves_around_is_logged_under_the_documented_logger(
    direct: redis.Redis, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/cache-consistency.md: warnings come from logger syncer.client.cachefill."""
    direct.set(key, RESERVED_PREFIX + b"bogus", px=60_000)
    cache = LeasedCache(redis.Redis.from_url(REDIS_URL))
    with caplog.at_level("WARNING", logger="syncer.client.cachefill"):
        cache.get_or_fill(key, lambda: b"v")
    (record,) = [r for r in caplog.records if r.name == "syncer.client.cachefill"]
    assert key in record.getMessage()
    assert "not cached" in record.getMessage()
