"""``LeasedCache``: leased cache-aside reads over ``redis.Redis`` or ``redis.RedisCluster``."""

from __future__ import annotations

import inspect
import time

from syncer.client.entries import CorruptEntryError, Value, as_bytes, now_ms
from syncer.client.leases import (
    REDIS_ERRORS,
    CacheRead,
    Hit,
    Lease,
    LeasedCacheBase,
    Loader,
    check_key,
    check_loader,
    fill_args,
    lease_granted_at_ms,
    marker,
    new_token,
    next_wait_s,
    read_result,
    ttl_ms,
)


def loaded_value(value: object) -> bytes | None:
    """What a sync loader returned, as bytes; a coroutine means the wrong cache was used."""
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # no "never awaited" warning on top of the error
        raise TypeError(
            "the loader returned an awaitable: LeasedCache calls loaders synchronously, use "
            "AsyncLeasedCache for async loaders"
        )
    return as_bytes(value, "the loader's value")


class LeasedCache(LeasedCacheBase):
    """Cache-aside reads over ``redis.Redis`` or ``redis.RedisCluster`` whose fills are leased.

    ``negative_ttl_s``: a loader's ``None`` ("no such item") is cached that long as an absence
    entry, which syncer invalidates like a value when the item appears; 0 caches nothing.
    Arguments are checked when the cache is built and at every call, before any Redis command.
    """

    def get(self, key: str) -> CacheRead:
        """The cached value, a lease to fill the key, or Busy while another reader holds one.

        A plain GET first: a hit (the common case) costs what it costs without leases; only a
        miss runs the script, which looks again and grants the lease atomically. Redis errors
        propagate (``get_or_fill`` serves around them), and so does ``CorruptEntryError`` for a
        key holding reserved-prefix bytes this library did not write.
        """
        check_key(key)
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
        check_key(key)
        args = fill_args(token, value, ttl_s, loaded_at_ms)
        stored = bool(self._fill(keys=[key], args=args))
        self.tally.add("fills_stored" if stored else "fills_refused")
        return stored

    def release(self, key: str, token: str) -> bool:
        """Give a lease back without filling, so the next reader loads at once."""
        check_key(key)
        lease_granted_at_ms(token)
        return bool(self._release(keys=[key], args=[marker(token)]))

    def get_or_fill(self, key: str, loader: Loader, ttl_s: float = 300) -> bytes | None:
        """The cached value, or ``loader()``'s, stored only if no invalidation voided the lease.

        The loader must read the item after the lease was granted, with a strongly consistent
        read (docs/cache-consistency.md), and return bytes, str (stored as UTF-8) or None;
        another type is a TypeError and nothing is stored. Its exceptions propagate; its lease
        is released. Bad arguments are refused before anything runs. When Redis fails
        (unreachable, timed out, ...) or the key holds bytes this library did not write, the
        loader's value is returned uncached and ``redis_errors`` or ``corrupt_entries`` counts
        it: a Redis outage costs loads and the client's timeouts, never a failed read.
        """
        check_key(key)
        check_loader(loader)
        ttl_ms(ttl_s)
        deadline = time.monotonic() + self.max_wait_s
        step = 0
        while True:
            try:
                got = self.get(key)
            except REDIS_ERRORS as error:
                self._redis_failed(key, error)
                return loaded_value(loader())
            except CorruptEntryError as error:
                self._corrupt(key, error)
                return loaded_value(loader())
            if isinstance(got, Hit):
                return got.value
            if isinstance(got, Lease):
                return self._load_and_fill(key, got.token, loader, ttl_s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.tally.add("loads_without_fill")
                return loaded_value(loader())
            if step == 0:
                self.tally.add("waits")
            time.sleep(next_wait_s(step, remaining, self.rng))
            step += 1

    def _load_and_fill(self, key: str, token: str, loader: Loader, ttl_s: float) -> bytes | None:
        started_ms = now_ms()  # the loaded state is at least this new
        try:
            value = loaded_value(loader())
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
