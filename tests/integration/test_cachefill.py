"""LeasedCache and AsyncLeasedCache on the real Redis (and on a Redis Cluster when one is given)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.client.cachefill import (
    RESERVED_PREFIX,
    AsyncLeasedCache,
    Busy,
    CacheEntry,
    Hit,
    Lease,
    LeaseCounters,
    LeasedCache,
    decode_entry,
    now_ms,
)
from tests.integration.conftest import REDIS_CLUSTER_URL, REDIS_URL

pytestmark = pytest.mark.integration

# Every test parametrised on ``target`` also runs on the local Redis Cluster (ports 7000-7005).
TARGETS = ["single", "cluster"]  # scripts/services.sh up starts both


def sync_client(target: str) -> Any:
    if target == "cluster":
        return redis.RedisCluster.from_url(REDIS_CLUSTER_URL)
    return redis.Redis.from_url(REDIS_URL)


def async_client(target: str) -> Any:
    if target == "cluster":
        return redis.asyncio.RedisCluster.from_url(REDIS_CLUSTER_URL)
    return redis.asyncio.Redis.from_url(REDIS_URL)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(target: str) -> Iterator[Any]:
    connection = sync_client(target)
    yield connection
    connection.close()


def stored_value(client: Any, key: str) -> bytes | None:
    """The value of the entry a fill stored in ``key``; None when the key holds nothing."""
    raw = client.get(key)
    if raw is None:
        return None
    entry = decode_entry(raw)
    assert entry is not None, f"{key} holds a lease marker, not an entry"
    return entry.value


@pytest.fixture
def key(client: Any) -> Iterator[str]:
    name = f"cachefill-test:{uuid.uuid4().hex}"
    yield name
    client.unlink(name)


def test_miss_grants_one_lease_and_the_fill_is_read_back(client: Any, key: str) -> None:
    """A miss hands out a lease, a second reader is told Busy, and the fill is what both read."""
    cache = LeasedCache(client)
    first = cache.get(key)
    assert isinstance(first, Lease)
    assert cache.get(key) == Busy()
    assert cache.fill(key, first.token, "v1 ✓") is True
    assert cache.get(key) == Hit("v1 ✓".encode())
    assert 0 < client.pttl(key) <= 300_000
    assert cache.counters() == LeaseCounters(hits=1, misses=1, fills_stored=1)


def test_unlink_voids_the_lease(client: Any, key: str) -> None:
    """syncer's UNLINK of the key voids an outstanding lease: the fill is refused, key absent."""
    cache = LeasedCache(client)
    lease = cache.get(key)
    assert isinstance(lease, Lease)
    client.unlink(key)  # what syncer's invalidation sends
    assert cache.fill(key, lease.token, b"v1") is False
    assert client.get(key) is None
    assert cache.counters().fills_refused == 1


def test_a_later_lease_voids_an_earlier_one(client: Any, key: str) -> None:
    """After an invalidation, a new reader's lease wins; the earlier token can fill nothing."""
    cache = LeasedCache(client)
    old = cache.get(key)
    client.unlink(key)
    new = cache.get(key)
    assert isinstance(old, Lease)
    assert isinstance(new, Lease)
    assert cache.fill(key, old.token, b"v1") is False
    assert cache.fill(key, new.token, b"v2") is True
    assert stored_value(client, key) == b"v2"


def test_a_dead_readers_lease_expires(client: Any, key: str) -> None:
    """A lease never filled expires after lease_ttl_ms; the key is then fillable again."""
    cache = LeasedCache(client, lease_ttl_ms=100)
    abandoned = cache.get(key)
    assert isinstance(abandoned, Lease)
    time.sleep(0.2)
    assert cache.get_or_fill(key, lambda: b"fresh") == b"fresh"
    assert stored_value(client, key) == b"fresh"
    assert cache.fill(key, abandoned.token, b"late") is False


def test_values_with_the_reserved_prefix_are_refused(client: Any, key: str) -> None:
    """A value that could pass for a lease marker is refused with a clear error, lease given back."""
    cache = LeasedCache(client)
    with pytest.raises(ValueError, match="reserved"):
        cache.get_or_fill(key, lambda: RESERVED_PREFIX + b"lease:forged")
    assert client.get(key) is None


def test_binary_values_are_stored_as_is(client: Any, key: str) -> None:
    """Arbitrary bytes (NUL, invalid UTF-8) round-trip unchanged."""
    cache = LeasedCache(client)
    value = bytes(range(256))
    assert cache.get_or_fill(key, lambda: value) == value
    assert cache.get_or_fill(key, lambda: b"other") == value


def test_none_is_cached_as_a_short_absence(client: Any, key: str) -> None:
    """A loader's None is cached for negative_ttl_s and read back as Hit(None)."""
    cache = LeasedCache(client, negative_ttl_s=5)
    assert cache.get_or_fill(key, lambda: None) is None
    assert cache.get(key) == Hit(None)
    assert 0 < client.pttl(key) <= 5000


def test_none_caches_nothing_with_negative_ttl_zero(client: Any, key: str) -> None:
    """With negative_ttl_s=0 a loader's None leaves the key absent (the lease is given back)."""
    cache = LeasedCache(client, negative_ttl_s=0)
    assert cache.get_or_fill(key, lambda: None) is None
    assert client.get(key) is None


def test_a_failing_loader_gives_its_lease_back(client: Any, key: str) -> None:
    """The loader's exception propagates and the next reader gets a lease at once."""
    cache = LeasedCache(client)

    def broken() -> bytes:
        raise RuntimeError("table unavailable")

    with pytest.raises(RuntimeError, match="table unavailable"):
        cache.get_or_fill(key, broken)
    assert isinstance(cache.get(key), Lease)


def test_a_waiter_loads_without_filling_after_max_wait(client: Any, key: str) -> None:
    """While another reader holds the lease past max_wait_ms, a reader loads and does not fill."""
    holder = LeasedCache(client)
    lease = holder.get(key)
    cache = LeasedCache(client, max_wait_ms=50)
    started = time.monotonic()
    assert cache.get_or_fill(key, lambda: b"mine") == b"mine"
    assert time.monotonic() - started < 1.0
    assert cache.counters() == LeaseCounters(waits=1, loads_without_fill=1)
    assert isinstance(lease, Lease)
    assert holder.fill(key, lease.token, b"holder's") is True


def test_thundering_herd_runs_the_loader_once(client: Any, key: str) -> None:
    """50 concurrent get_or_fill on one missing key run the loader once; all get its value."""
    cache = LeasedCache(client)
    calls = []
    start = threading.Barrier(50)

    def loader() -> bytes:
        calls.append(1)
        time.sleep(0.2)  # a slow query: everyone else arrives while it runs
        return b"expensive"

    results: list[bytes | None] = []

    def reader() -> None:
        start.wait()
        results.append(cache.get_or_fill(key, loader))

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [b"expensive"] * 50
    counters = cache.counters()
    assert (counters.misses, counters.fills_stored, counters.loads_without_fill) == (1, 1, 0)
    assert counters.waits == 49


def test_thundering_herd_after_an_expired_lease_loads_at_most_twice(client: Any, key: str) -> None:
    """A lease that expires while its loader runs lets one more reader load: at most two loads."""
    cache = LeasedCache(client, lease_ttl_ms=150, max_wait_ms=5_000)
    calls = []
    start = threading.Barrier(50)

    def loader() -> bytes:
        calls.append(1)
        time.sleep(0.2 if len(calls) == 1 else 0.01)  # the first outlives its lease
        return b"value"

    def reader() -> None:
        start.wait()
        cache.get_or_fill(key, loader)

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(calls) <= 2
    assert stored_value(client, key) == b"value"


def test_a_fill_stores_its_load_start_time_in_the_envelope(client: Any, key: str) -> None:
    """get_or_fill stores the value behind the epoch ms taken just before the loader ran."""
    cache = LeasedCache(client)
    times: list[int] = []

    def loader() -> bytes:
        times.append(now_ms())
        return b"v1"

    before = now_ms()
    assert cache.get_or_fill(key, loader) == b"v1"
    raw = client.get(key)
    entry = decode_entry(raw)
    assert entry is not None
    assert entry.value == b"v1"
    assert entry.loaded_at_ms is not None
    assert before <= entry.loaded_at_ms <= times[0]
    assert raw == b"\x00syncer:value:%d:v1" % entry.loaded_at_ms
    assert cache.get(key) == Hit(b"v1")  # the envelope never reaches the caller


def test_the_absence_entry_stores_its_load_start_time(client: Any, key: str) -> None:
    """A loader's None is stored as the absence entry with the time its load began."""
    cache = LeasedCache(client)
    before = now_ms()
    assert cache.get_or_fill(key, lambda: None) is None
    entry = decode_entry(client.get(key))
    assert entry is not None
    assert entry.value is None
    assert entry.loaded_at_ms is not None
    assert before <= entry.loaded_at_ms <= now_ms()


def test_a_manual_fill_stores_the_time_its_lease_was_asked_for(client: Any, key: str) -> None:
    """fill with a lease from get records the grant time (the load followed it) or the one given."""
    cache = LeasedCache(client)
    before = now_ms()
    lease = cache.get(key)
    after = now_ms()
    assert isinstance(lease, Lease)
    assert cache.fill(key, lease.token, b"v1") is True
    entry = decode_entry(client.get(key))
    assert entry is not None
    assert entry.loaded_at_ms is not None
    assert before <= entry.loaded_at_ms <= after
    client.unlink(key)
    lease = cache.get(key)
    assert isinstance(lease, Lease)
    assert cache.fill(key, lease.token, b"v2", loaded_at_ms=1_700_000_000_000) is True
    assert decode_entry(client.get(key)) == CacheEntry(b"v2", 1_700_000_000_000)


def test_values_written_before_envelopes_still_read(client: Any, key: str) -> None:
    """A plain value and the old absence entry read back as they did, without calling the loader."""
    cache = LeasedCache(client)

    def loader() -> bytes:
        raise AssertionError("a cached entry must not be loaded again")

    client.set(key, b'{"price": 10}', px=60_000)  # what a fill stored before envelopes
    assert cache.get_or_fill(key, loader) == b'{"price": 10}'
    assert decode_entry(client.get(key)) == CacheEntry(b'{"price": 10}', None)
    client.set(key, b"\x00syncer:absent", px=60_000)  # the old "no such item" entry
    assert cache.get(key) == Hit(None)
    assert cache.get_or_fill(key, loader) is None
    assert decode_entry(client.get(key)) == CacheEntry(None, None)


def test_async_fill_stores_its_load_start_time(target: str, key: str) -> None:
    """AsyncLeasedCache stores the same envelope, with the time its loader was awaited."""

    async def scenario() -> None:
        client = async_client(target)
        try:
            cache = AsyncLeasedCache(client)
            before = now_ms()

            async def load() -> bytes:
                return b"v1"

            assert await cache.get_or_fill(key, load) == b"v1"
            entry = decode_entry(await client.get(key))
            assert entry is not None
            assert entry.value == b"v1"
            assert entry.loaded_at_ms is not None
            assert before <= entry.loaded_at_ms <= now_ms()
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_client_that_decodes_responses_is_rejected() -> None:
    """Values are bytes: a client with decode_responses=True is refused up front."""
    with pytest.raises(ValueError, match="decode_responses"):
        LeasedCache(redis.Redis.from_url(REDIS_URL, decode_responses=True))


def test_async_twin_has_the_same_protocol(target: str, key: str) -> None:
    """AsyncLeasedCache: lease, Busy, voided fill after UNLINK, then a fill that lands."""

    async def scenario() -> None:
        client = async_client(target)
        try:
            cache = AsyncLeasedCache(client)
            lease = await cache.get(key)
            assert isinstance(lease, Lease)
            assert await cache.get(key) == Busy()
            await client.unlink(key)
            assert await cache.fill(key, lease.token, b"v1") is False

            async def load() -> str:
                return "v2"

            assert await cache.get_or_fill(key, load) == b"v2"
            assert await cache.get(key) == Hit(b"v2")
            counters = cache.counters()
            assert (counters.fills_refused, counters.fills_stored) == (1, 1)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_async_thundering_herd_runs_the_loader_once(target: str, key: str) -> None:
    """50 concurrent async get_or_fill on one missing key await the loader once."""

    async def scenario() -> list[bytes | None]:
        client = async_client(target)
        try:
            # redis-py's async RedisCluster can fail commands that race its first connections
            # ("'NoneType' object has no attribute 'writelines'"): connect before the herd.
            await client.ping()
            cache = AsyncLeasedCache(client)
            calls = []

            async def load() -> bytes:
                calls.append(1)
                await asyncio.sleep(0.2)
                return b"expensive"

            results = await asyncio.gather(*(cache.get_or_fill(key, load) for _ in range(50)))
            assert len(calls) == 1
            assert cache.counters().waits == 49
            return list(results)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [b"expensive"] * 50


def test_async_failing_loader_gives_its_lease_back(target: str, key: str) -> None:
    """An async loader's exception propagates and the lease is released."""

    async def scenario() -> None:
        client = async_client(target)
        try:
            cache = AsyncLeasedCache(client)

            async def broken() -> bytes:
                raise RuntimeError("table unavailable")

            with pytest.raises(RuntimeError):
                await cache.get_or_fill(key, broken)
            assert isinstance(await cache.get(key), Lease)
        finally:
            await client.aclose()

    asyncio.run(scenario())


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.integers(0, 2)),
        st.tuples(st.just("fill"), st.integers(0, 2)),
        st.tuples(st.just("unlink"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS)
def test_any_interleaving_matches_the_lease_model(ops: list[tuple[str, int]]) -> None:
    """Against a model of the protocol: a fill lands only if its lease is still in the key."""
    client = redis.Redis.from_url(REDIS_URL)
    cache = LeasedCache(client)
    key = f"cachefill-model:{uuid.uuid4().hex}"
    state: tuple[str, Any] = ("absent", None)  # or ("lease", reader) or ("value", bytes)
    tokens: dict[int, str] = {}  # the last lease each reader was granted
    try:
        for op, reader in ops:
            if op == "unlink":
                client.unlink(key)
                state = ("absent", None)
            elif op == "get":
                got = cache.get(key)
                if state[0] == "absent":
                    assert isinstance(got, Lease)
                    tokens[reader] = got.token
                    state = ("lease", got.token)
                elif state[0] == "lease":
                    assert got == Busy()
                else:
                    assert got == Hit(state[1])
            elif reader in tokens:
                value = f"from reader {reader}".encode()
                stored = cache.fill(key, tokens[reader], value)
                assert stored == (state == ("lease", tokens[reader]))
                if stored:
                    state = ("value", value)
        expected = state[1] if state[0] == "value" else None
        held = client.get(key)
        entry = None if held is None else decode_entry(held)
        assert (None if entry is None else entry.value) == expected
    finally:
        client.unlink(key)
        client.close()
