"""Leased cache fills for the readers of syncer's cache: a fill that an invalidation voided never lands.

The protocol (docs/cache-consistency.md), after memcache's leases (Nishtala et al., NSDI 2013,
section 3.2.1), with the lease kept in the cache key itself:

- ``get``: a GET; when the key is absent, one Lua script looks again and stores a lease marker
  (reserved prefix + a token: the time, then 128 random bits) with ``PX lease_ttl_ms``,
  handing out the token.
- ``fill``: one Lua script stores the value only while the key still holds that exact marker,
  in a small envelope (reserved prefix + the epoch milliseconds at which the load began), so a
  checker can tell a value loaded before a change from one loaded after it (``decode_entry``).
- syncer's ``UNLINK`` of the key removes the marker, so it voids the lease with no change to
  syncer and no extra round trip; a reader that dies leaves a marker that expires by itself.

``get_or_fill`` degrades when Redis fails: it returns the loader's value uncached and counts
``redis_errors``; build the client with socket timeouts and redis-py's retries off, or each
failure costs seconds (docs/cache-consistency.md, "While Redis is down").

Every step touches one key, so the same scripts run on Redis Cluster. The protocol never compares
clocks: only the monotonic clock of one reader bounds how long it waits for another reader's
fill; the envelope's wall-clock time is information for checkers, never a decision here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

_log = logging.getLogger(__name__)

# What get_or_fill serves around: every error of redis-py's clients (connection refused or cut,
# timeouts, cluster down, OOM, ...); RedisClusterException is not a RedisError in redis-py.
REDIS_ERRORS = (RedisError, RedisClusterException)

# Cached values never start with this prefix: lease markers and the entries ``fill`` stores do.
# NUL first, so no text, JSON or UTF-8 value can collide with it; ``fill`` refuses such values.
RESERVED_PREFIX = b"\x00syncer:"
LEASE_PREFIX = RESERVED_PREFIX + b"lease:"
# The entries ``fill`` stores (docs/cache-consistency.md, "Stored format"): the value or the
# "no such item" answer behind the epoch milliseconds at which its load began.
VALUE_PREFIX = RESERVED_PREFIX + b"value:"  # + b"<loaded_at_ms>:" + the value
ABSENT_PREFIX = RESERVED_PREFIX + b"absent:"  # + b"<loaded_at_ms>"
# What versions before the envelope stored for "no such item" (plain values had no prefix).
ABSENT_VALUE = RESERVED_PREFIX + b"absent"
# Milliseconds are 1 to 19 ASCII digits: a signed 64-bit count, no sign, spaces or underscores.
_MAX_MS_DIGITS = 19

# Waiting for another reader's fill: first sleep, doubling up to the cap, with jitter.
FIRST_WAIT_S = 0.002
MAX_WAIT_STEP_S = 0.05

# KEYS[1] = the cache key; ARGV[1] = a new lease marker; ARGV[2] = lease TTL in ms.
# Returns the value held (a real value, another reader's marker or the absence entry), or nil
# when the key was absent and now holds ARGV[1]: the lease is granted.
_GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value then
  return value
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS[1] = the cache key; ARGV[1] = the lease marker; ARGV[2] = the value; ARGV[3] = TTL in ms.
# Stores the value only while the key still holds this very marker: 1 stored, 0 refused.
_FILL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] = the cache key; ARGV[1] = the lease marker. Gives a lease back (the load failed).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Hit:
    """The key holds a value; ``None`` is the cached answer "no such item"."""

    value: bytes | None


@dataclass(frozen=True, slots=True)
class Lease:
    """The key was missing: this reader may load the item and ``fill`` with this token."""

    token: str


@dataclass(frozen=True, slots=True)
class Busy:
    """Another reader holds the lease and is loading the item."""


CacheRead = Hit | Lease | Busy


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What a cache key holds, lease markers aside: the value and when its load began."""

    value: bytes | None  # None: the "no such item" entry
    loaded_at_ms: int | None  # None: an entry written before envelopes (old format)


@dataclass(frozen=True, slots=True)
class LeaseCounters:
    """What a cache did since it was built; export them as counters."""

    hits: int = 0  # reads answered from the cache (values and "no such item")
    misses: int = 0  # reads that found the key absent and got a lease
    fills_stored: int = 0
    fills_refused: int = 0  # the lease was voided (an invalidation): a stale value prevented
    waits: int = 0  # get_or_fill calls that found another reader's lease and waited
    loads_without_fill: int = 0  # waits that ran out: loaded, returned, not cached
    redis_errors: int = 0  # Redis errors get_or_fill served around: loaded, returned, not cached

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


Value = bytes | bytearray | memoryview | str
Loader = Callable[[], Value | None]
AsyncLoader = Callable[[], Awaitable[Value | None]]


def now_ms() -> int:
    """This host's wall clock in epoch milliseconds: what an entry's ``loaded_at_ms`` holds."""
    return time.time_ns() // 1_000_000


def new_token(granted_at_ms: int) -> str:
    """A lease token: the time it was asked for (so ``fill`` knows how new a load is at least),
    then 128 random bits, so no two tokens are ever equal."""
    return f"{granted_at_ms}-{secrets.token_hex(16)}"


def lease_granted_at_ms(token: str) -> int:
    """The time a token from ``new_token`` was asked for: a load under its lease began later."""
    granted, dash, _ = token.partition("-")
    if not dash:
        raise ValueError(f"not a lease token from LeasedCache.get: {token!r}")
    return _parse_ms(granted.encode("ascii", "replace"), token)


def marker(token: str) -> bytes:
    """The value a key holds while the lease ``token`` is out."""
    return LEASE_PREFIX + token.encode("ascii")


def as_bytes(value: Value | None) -> bytes | None:
    """A loaded value as readers get it back: str as UTF-8, None stays "no such item".

    A value that starts with the reserved prefix could be mistaken for an entry or a lease:
    refused.
    """
    if value is None:
        return None
    encoded = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if encoded.startswith(RESERVED_PREFIX):
        raise ValueError(
            f"a cached value may not start with {RESERVED_PREFIX!r}, reserved for lease markers"
        )
    return encoded


def encode_entry(value: Value | None, loaded_at_ms: int) -> bytes:
    """The bytes ``fill`` stores: the value (or "no such item") behind its load's start time."""
    checked = as_bytes(value)
    if isinstance(loaded_at_ms, bool) or not 0 <= loaded_at_ms < 10**_MAX_MS_DIGITS:
        raise ValueError(f"loaded_at_ms must be epoch milliseconds, got {loaded_at_ms!r}")
    stamp = str(loaded_at_ms).encode("ascii")
    if checked is None:
        return ABSENT_PREFIX + stamp
    return VALUE_PREFIX + stamp + b":" + checked


def decode_entry(stored: bytes) -> CacheEntry | None:
    """What a raw GET of a cache key returned; None for a lease marker.

    Entries written before envelopes read back with ``loaded_at_ms`` None: a plain value as
    itself, the old absence entry as "no such item". Any other reserved-prefix value is not
    something this library wrote: ValueError.
    """
    if stored.startswith(LEASE_PREFIX):
        return None
    if stored.startswith(VALUE_PREFIX):
        stamp, colon, value = stored[len(VALUE_PREFIX) :].partition(b":")
        if colon:
            return CacheEntry(value, _parse_ms(stamp, stored))
    elif stored.startswith(ABSENT_PREFIX):
        return CacheEntry(None, _parse_ms(stored[len(ABSENT_PREFIX) :], stored))
    elif stored == ABSENT_VALUE:
        return CacheEntry(None, None)
    elif not stored.startswith(RESERVED_PREFIX):
        return CacheEntry(stored, None)
    raise ValueError(f"not a cache entry that LeasedCache writes: {stored[:48]!r}")


def _parse_ms(stamp: bytes, whole: object) -> int:
    if not (0 < len(stamp) <= _MAX_MS_DIGITS and stamp.isdigit()):
        raise ValueError(f"bad milliseconds {stamp!r} in {whole!r}"[:200])
    return int(stamp)


def read_result(reply: bytes | None, token: str) -> CacheRead:
    """Classify what a read found: nil from the get-or-lease script sent with ``token`` is
    that lease; another reader's marker is Busy; an entry is a Hit of its value."""
    if reply is None:
        return Lease(token)
    entry = decode_entry(reply)
    if entry is None:
        return Busy()
    return Hit(entry.value)


def ttl_ms(ttl_s: float, name: str = "ttl_s") -> int:
    """A TTL in whole milliseconds; a key without expiry is never what a cache fill wants."""
    if isinstance(ttl_s, bool) or not (
        isinstance(ttl_s, int | float) and math.isfinite(ttl_s) and ttl_s * 1000 >= 1
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {ttl_s!r}")
    return int(ttl_s * 1000)


def fill_args(
    token: str, value: Value | None, ttl_s: float, loaded_at_ms: int | None
) -> list[bytes | int]:
    """The fill script's ARGV: the lease marker, the entry and its TTL in milliseconds."""
    loaded = lease_granted_at_ms(token) if loaded_at_ms is None else loaded_at_ms
    return [marker(token), encode_entry(value, loaded), ttl_ms(ttl_s)]


def next_wait_s(step: int, remaining_s: float, rng: random.Random) -> float:
    """The sleep before read number ``step + 1`` of a waiting reader: doubling, jittered, capped."""
    ceiling = min(FIRST_WAIT_S * 2**step, MAX_WAIT_STEP_S)
    jittered: float = ceiling * (0.5 + rng.random() / 2)
    return max(0.0, min(remaining_s, jittered))


def _check_client(redis_client: Any) -> None:
    encoder = redis_client.get_encoder()
    if getattr(encoder, "decode_responses", False):
        raise ValueError(
            "LeasedCache needs a Redis client with decode_responses=False: values are bytes"
        )


class _Tally:
    """Counters shared by the threads of one cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = LeaseCounters().as_dict()

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> LeaseCounters:
        with self._lock:
            return LeaseCounters(**self._counts)


class _LeasedCacheBase:
    """The client, scripts, settings and counters shared by the sync and the async cache."""

    def __init__(
        self,
        redis_client: Any,
        lease_ttl_ms: int = 10_000,
        max_wait_ms: int = 2_000,
        negative_ttl_s: float = 30.0,
    ) -> None:
        if lease_ttl_ms <= 0 or max_wait_ms < 0:
            raise ValueError("lease_ttl_ms must be positive, max_wait_ms not negative")
        if negative_ttl_s != 0:
            ttl_ms(negative_ttl_s, "negative_ttl_s")  # 0 caches nothing; else a valid TTL
        _check_client(redis_client)
        self.redis = redis_client
        # Scripts register on the client's own kind (sync or asyncio), so one setup serves both.
        self._get_or_lease = redis_client.register_script(_GET_OR_LEASE)
        self._fill = redis_client.register_script(_FILL)
        self._release = redis_client.register_script(_RELEASE)
        self.lease_ttl_ms = lease_ttl_ms
        self.max_wait_s = max_wait_ms / 1000
        self.negative_ttl_s = negative_ttl_s
        self.tally = _Tally()
        self.rng = random.Random()

    def counters(self) -> LeaseCounters:
        return self.tally.snapshot()

    def _counted(self, result: CacheRead) -> CacheRead:
        """A read's result, counted as a hit or a miss (a lease)."""
        if isinstance(result, Hit):
            self.tally.add("hits")
        elif isinstance(result, Lease):
            self.tally.add("misses")
        return result

    def _redis_failed(self, key: str, error: Exception) -> None:
        """Count a Redis error that ``get_or_fill`` worked around (the caller got its value)."""
        self.tally.add("redis_errors")
        _log.warning("cache key %s: Redis failed, served without the cache: %r", key, error)


class LeasedCache(_LeasedCacheBase):
    """Cache-aside reads over ``redis.Redis`` or ``redis.RedisCluster`` whose fills are leased.

    ``negative_ttl_s``: a loader's ``None`` ("no such item") is cached that long as an absence
    entry, which syncer invalidates like a value when the item appears; 0 caches nothing.
    """

    def get(self, key: str) -> CacheRead:
        """The cached value, a lease to fill the key, or Busy while another reader holds one.

        A plain GET first: a hit (the common case) costs what it costs without leases; only a
        miss runs the script, which looks again and grants the lease atomically. Redis errors
        propagate (``get_or_fill`` serves around them).
        """
        token = ""
        reply = self.redis.get(key)
        if reply is None:
            token = new_token(now_ms())
            reply = self._get_or_lease(keys=[key], args=[marker(token), self.lease_ttl_ms])
        return self._counted(read_result(reply, token))

    def fill(
        self,
        key: str,
        token: str,
        value: Value | None,
        ttl_s: float = 300,
        *,
        loaded_at_ms: int | None = None,
    ) -> bool:
        """Store ``value`` if the lease ``token`` is still live; False when it was voided.

        The entry records ``loaded_at_ms``, the time the load began (by default the time the
        lease was asked for, which the load followed). Redis errors propagate.
        """
        stored = bool(self._fill(keys=[key], args=fill_args(token, value, ttl_s, loaded_at_ms)))
        self.tally.add("fills_stored" if stored else "fills_refused")
        return stored

    def release(self, key: str, token: str) -> bool:
        """Give a lease back without filling, so the next reader loads at once."""
        return bool(self._release(keys=[key], args=[marker(token)]))

    def get_or_fill(self, key: str, loader: Loader, ttl_s: float = 300) -> bytes | None:
        """The cached value, or ``loader()``'s, stored only if no invalidation voided the lease.

        The loader must read the item after the lease was granted, with a strongly consistent
        read (docs/cache-consistency.md). Its exceptions propagate; its lease is released.
        A bad ``ttl_s`` is refused before anything runs. When Redis fails (unreachable, timed
        out, ...) the loader's value is returned uncached and ``redis_errors`` counts it: a
        Redis outage costs loads and the client's timeouts, never a failed read.
        """
        ttl_ms(ttl_s)
        deadline = time.monotonic() + self.max_wait_s
        step = 0
        while True:
            try:
                got = self.get(key)
            except REDIS_ERRORS as error:
                self._redis_failed(key, error)
                return as_bytes(loader())
            if isinstance(got, Hit):
                return got.value
            if isinstance(got, Lease):
                return self._load_and_fill(key, got.token, loader, ttl_s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.tally.add("loads_without_fill")
                return as_bytes(loader())
            if step == 0:
                self.tally.add("waits")
            time.sleep(next_wait_s(step, remaining, self.rng))
            step += 1

    def _load_and_fill(self, key: str, token: str, loader: Loader, ttl_s: float) -> bytes | None:
        started_ms = now_ms()  # the loaded state is at least this new
        try:
            value = as_bytes(loader())
        except BaseException:
            self._release_serving_around(key, token)
            raise
        if value is None and not self.negative_ttl_s:
            self._release_serving_around(key, token)
            return None
        ttl = self.negative_ttl_s if value is None else ttl_s
        try:
            self.fill(key, token, value, ttl, loaded_at_ms=started_ms)
        except REDIS_ERRORS as error:
            self._redis_failed(key, error)  # the value was loaded: the caller still gets it
        return value

    def _release_serving_around(self, key: str, token: str) -> None:
        """Give the lease back; if Redis fails, the marker expires after lease_ttl_ms."""
        try:
            self.release(key, token)
        except REDIS_ERRORS as error:
            self._redis_failed(key, error)


class AsyncLeasedCache(_LeasedCacheBase):
    """``LeasedCache`` over ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``."""

    async def get(self, key: str) -> CacheRead:
        """The cached value, a lease to fill the key, or Busy while another reader holds one."""
        token = ""
        reply = await self.redis.get(key)
        if reply is None:
            token = new_token(now_ms())
            reply = await self._get_or_lease(keys=[key], args=[marker(token), self.lease_ttl_ms])
        return self._counted(read_result(reply, token))

    async def fill(
        self,
        key: str,
        token: str,
        value: Value | None,
        ttl_s: float = 300,
        *,
        loaded_at_ms: int | None = None,
    ) -> bool:
        """Store ``value`` if the lease ``token`` is still live; False when it was voided."""
        args = fill_args(token, value, ttl_s, loaded_at_ms)
        stored = bool(await self._fill(keys=[key], args=args))
        self.tally.add("fills_stored" if stored else "fills_refused")
        return stored

    async def release(self, key: str, token: str) -> bool:
        """Give a lease back without filling, so the next reader loads at once."""
        return bool(await self._release(keys=[key], args=[marker(token)]))

    async def get_or_fill(self, key: str, loader: AsyncLoader, ttl_s: float = 300) -> bytes | None:
        """The cached value, or ``await loader()``'s, stored only if its lease is still live.

        Redis failures and bad TTLs are handled as by ``LeasedCache.get_or_fill``.
        """
        ttl_ms(ttl_s)
        deadline = time.monotonic() + self.max_wait_s
        step = 0
        while True:
            try:
                got = await self.get(key)
            except REDIS_ERRORS as error:
                self._redis_failed(key, error)
                return as_bytes(await loader())
            if isinstance(got, Hit):
                return got.value
            if isinstance(got, Lease):
                return await self._load_and_fill(key, got.token, loader, ttl_s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.tally.add("loads_without_fill")
                return as_bytes(await loader())
            if step == 0:
                self.tally.add("waits")
            await asyncio.sleep(next_wait_s(step, remaining, self.rng))
            step += 1

    async def _load_and_fill(
        self, key: str, token: str, loader: AsyncLoader, ttl_s: float
    ) -> bytes | None:
        started_ms = now_ms()  # the loaded state is at least this new
        try:
            value = as_bytes(await loader())
        except BaseException:
            # A cancelled reader gives its lease back too; shielded so the release completes.
            await asyncio.shield(self._release_serving_around(key, token))
            raise
        if value is None and not self.negative_ttl_s:
            await self._release_serving_around(key, token)
            return None
        ttl = self.negative_ttl_s if value is None else ttl_s
        try:
            await self.fill(key, token, value, ttl, loaded_at_ms=started_ms)
        except REDIS_ERRORS as error:
            self._redis_failed(key, error)  # the value was loaded: the caller still gets it
        return value

    async def _release_serving_around(self, key: str, token: str) -> None:
        """Give the lease back; if Redis fails, the marker expires after lease_ttl_ms."""
        try:
            await self.release(key, token)
        except REDIS_ERRORS as error:
            self._redis_failed(key, error)
