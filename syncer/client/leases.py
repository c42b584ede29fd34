"""The lease protocol both caches share: tokens, the Lua scripts, counters, arguments checked.

``LeasedCache`` (client/leasedcache.py) and ``AsyncLeasedCache`` (client/asyncleasedcache.py)
differ only in awaiting their Redis calls and their loader; everything they decide is here.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from syncer.client.entries import (
    LEASE_PREFIX,
    CorruptEntryError,
    Value,
    check_ms,
    decode_entry,
    encode_entry,
    parse_ms,
)

# The logger's name is the module users import (docs/cache-consistency.md).
log = logging.getLogger("syncer.client.cachefill")

# What get_or_fill serves around: every error of redis-py's clients (connection refused or cut,
# timeouts, cluster down, OOM, ...); RedisClusterException is not a RedisError in redis-py.
REDIS_ERRORS = (RedisError, RedisClusterException)

# Waiting for another reader's fill: first sleep, doubling up to the cap, with jitter.
FIRST_WAIT_S = 0.002
MAX_WAIT_STEP_S = 0.05

# KEYS[1] = the cache key; ARGV[1] = a new lease marker; ARGV[2] = lease TTL in ms.
# Returns the value held (a real value, another reader's marker or the absence entry), or nil
# when the key was absent and now holds ARGV[1]: the lease is granted.
GET_OR_LEASE = """
local value = redis.call('GET', KEYS[1])
if value then
  return value
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS[1] = the cache key; ARGV[1] = the lease marker; ARGV[2] = the value; ARGV[3] = TTL in ms.
# Stores the value only while the key still holds this very marker: 1 stored, 0 refused.
FILL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS[1] = the cache key; ARGV[1] = the lease marker. Gives a lease back (the load failed).
RELEASE = """
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
class LeaseCounters:
    """What a cache did since it was built; export them as counters."""

    hits: int = 0  # reads answered from the cache (values and "no such item")
    misses: int = 0  # reads that found the key absent and got a lease
    fills_stored: int = 0
    fills_refused: int = 0  # the lease was voided (an invalidation): a stale value prevented
    waits: int = 0  # get_or_fill calls that found another reader's lease and waited
    loads_without_fill: int = 0  # waits that ran out: loaded, returned, not cached
    redis_errors: int = 0  # Redis errors get_or_fill served around: loaded, returned, not cached
    corrupt_entries: int = 0  # reserved-prefix bytes this library did not write: loaded instead

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


Loader = Callable[[], Value | None]
AsyncLoader = Callable[[], Awaitable[Value | None]]


def new_token(granted_at_ms: int) -> str:
    """A lease token: the time it was asked for (so ``fill`` knows how new a load is at least),
    then 128 random bits, so no two tokens are ever equal."""
    return f"{check_ms(granted_at_ms, 'granted_at_ms')}-{secrets.token_hex(16)}"


def lease_granted_at_ms(token: str) -> int:
    """The time a token from ``new_token`` was asked for: a load under its lease began later."""
    if not isinstance(token, str):
        raise TypeError(f"token must be the str of a Lease, not {type(token).__name__}")
    granted, dash, _ = token.partition("-")
    if not dash:
        raise ValueError(f"not a lease token from LeasedCache.get: {token!r}")
    try:
        return parse_ms(granted.encode("ascii", "replace"), token)
    except CorruptEntryError as error:
        raise ValueError(f"not a lease token from LeasedCache.get: {error}") from None


def marker(token: str) -> bytes:
    """The value a key holds while the lease ``token`` is out."""
    if not isinstance(token, str):
        raise TypeError(f"token must be the str of a Lease, not {type(token).__name__}")
    if not token.isascii():
        raise ValueError(f"token must be ASCII, as LeasedCache.get makes them: {token!r:.40}")
    return LEASE_PREFIX + token.encode("ascii")


def read_result(reply: bytes | None, token: str) -> CacheRead:
    """Classify what a read found: nil from the get-or-lease script sent with ``token`` is
    that lease; another reader's marker is Busy; an entry is a Hit of its value.

    Bytes behind the reserved prefix that this library did not write: ``CorruptEntryError``.
    """
    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if reply is None:
        return Lease(token)
    entry = decode_entry(reply)
    if entry is None:
        return Busy()
    return Hit(entry.value)


def ttl_ms(ttl_s: float, name: str = "ttl_s") -> int:
    """A TTL in whole milliseconds; a key without expiry is never what a cache fill wants."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(ttl_s).__name__}")
    if not (math.isfinite(ttl_s) and ttl_s * 1000 >= 1):
        raise ValueError(f"{name} must be a positive number of seconds, got {ttl_s!r}")
    return int(ttl_s * 1000)


def fill_args(
    token: str, value: Value | None, ttl_s: float, loaded_at_ms: int | None
) -> list[bytes | int]:
    """The fill script's ARGV: the lease marker, the entry and its TTL in milliseconds."""
    granted = lease_granted_at_ms(token)
    loaded = granted if loaded_at_ms is None else check_ms(loaded_at_ms)
    return [marker(token), encode_entry(value, loaded), ttl_ms(ttl_s)]


def next_wait_s(step: int, remaining_s: float, rng: random.Random) -> float:
    """The sleep before read number ``step + 1`` of a waiting reader: doubling, jittered, capped."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int from 0, got {step!r}")
    if isinstance(remaining_s, bool) or not isinstance(remaining_s, int | float):
        raise TypeError(
            f"remaining_s must be a number of seconds, not {type(remaining_s).__name__}"
        )
    if math.isnan(remaining_s):
        raise ValueError("remaining_s must be a number of seconds, got nan")
    if not callable(getattr(rng, "random", None)):
        raise TypeError(f"rng must be a random.Random, not {type(rng).__name__}")
    ceiling = min(FIRST_WAIT_S * 2**step, MAX_WAIT_STEP_S)
    jittered: float = ceiling * (0.5 + rng.random() / 2)
    return max(0.0, min(remaining_s, jittered))


def check_key(key: object) -> str:
    """A cache key: a non-empty str (an empty one is a template that rendered nothing)."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("key must not be empty")
    return key


def check_loader(loader: object) -> None:
    if not callable(loader):
        raise TypeError(f"loader must be callable with no arguments, not {type(loader).__name__}")


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int of milliseconds, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _check_client(redis_client: Any, want_async: bool) -> None:
    """A redis-py client (or a subclass) of the cache's kind, sync or asyncio, returning bytes."""
    modules = [cls.__module__ for cls in type(redis_client).__mro__]
    if not (
        callable(getattr(redis_client, "register_script", None))
        and any(module.split(".")[0] == "redis" for module in modules)
    ):
        raise TypeError(
            "redis_client must be a redis-py client (redis.Redis, redis.RedisCluster or their "
            f"redis.asyncio twins), not {type(redis_client).__name__}"
        )
    is_async = any(module.startswith("redis.asyncio") for module in modules)
    if is_async and not want_async:
        raise TypeError("redis_client is a redis.asyncio client: use AsyncLeasedCache with it")
    if want_async and not is_async:
        raise TypeError("redis_client is a synchronous client: use LeasedCache with it")
    encoder = redis_client.get_encoder()
    if getattr(encoder, "decode_responses", False):
        raise ValueError(
            "LeasedCache needs a Redis client with decode_responses=False: values are bytes"
        )


class Tally:
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


class LeasedCacheBase:
    """The client, scripts, settings and counters shared by the sync and the async cache."""

    _is_async = False

    def __init__(
        self,
        redis_client: Any,
        lease_ttl_ms: int = 10_000,
        max_wait_ms: int = 2_000,
        negative_ttl_s: float = 30.0,
    ) -> None:
        _check_int(lease_ttl_ms, "lease_ttl_ms", 1)
        _check_int(max_wait_ms, "max_wait_ms", 0)
        if isinstance(negative_ttl_s, bool) or not isinstance(negative_ttl_s, int | float):
            raise TypeError(
                f"negative_ttl_s must be a number of seconds, not {type(negative_ttl_s).__name__}"
            )
        if negative_ttl_s != 0:
            ttl_ms(negative_ttl_s, "negative_ttl_s")  # 0 caches nothing; else a valid TTL
        _check_client(redis_client, self._is_async)
        self.redis = redis_client
        # Scripts register on the client's own kind (sync or asyncio), so one setup serves both.
        self._get_or_lease = redis_client.register_script(GET_OR_LEASE)
        self._fill = redis_client.register_script(FILL)
        self._release = redis_client.register_script(RELEASE)
        self.lease_ttl_ms = lease_ttl_ms
        self.max_wait_s = max_wait_ms / 1000
        self.negative_ttl_s = negative_ttl_s
        self.tally = Tally()
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
        log.warning("cache key %s: Redis failed, served without the cache: %r", key, error)

    def _corrupt(self, key: str, error: CorruptEntryError) -> None:
        """Count a key ``get_or_fill`` loaded around: it holds bytes this library did not write."""
        self.tally.add("corrupt_entries")
        log.warning("cache key %s: %s; served the loader's value, not cached", key, error)
