"""``AsyncLeasedCache``: ``LeasedCache`` over ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``."""

from __future__ import annotations

import asyncio
import inspect
import time

from syncer.client.entries import CorruptEntryError, Value, as_bytes, now_ms
from syncer.client.leases import (
    REDIS_ERRORS,
    AsyncLoader,
    CacheRead,
    Hit,
    Lease,
    LeasedCacheBase,
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


async def loaded_value(loader: AsyncLoader) -> bytes | None:
    """Await ``loader()`` and return its value as bytes; a sync loader is a TypeError."""
    pending = loader()
    if not inspect.isawaitable(pending):
        raise TypeError(
            f"the loader returned {type(pending).__name__}, not an awaitable: AsyncLeasedCache "
            "needs an async loader (use LeasedCache for synchronous ones)"
        )
    return as_bytes(await pending, "the loader's value")


class AsyncLeasedCache(LeasedCacheBase):
    """``LeasedCache`` over ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``."""

    _is_async = True

    async def get(self, key: str) -> CacheRead:
        """The cached value, a lease to fill the key, or Busy while another reader holds one."""
        check_key(key)
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
        check_key(key)
        args = fill_args(token, value, ttl_s, loaded_at_ms)
        stored = bool(await self._fill(keys=[key], args=args))
        self.tally.add("fills_stored" if stored else "fills_refused")
        return stored

    async def release(self, key: str, token: str) -> bool:
        """Give a lease back without filling, so the next reader loads at once."""
        check_key(key)
        lease_granted_at_ms(token)
        return bool(await self._release(keys=[key], args=[marker(token)]))

    async def get_or_fill(self, key: str, loader: AsyncLoader, ttl_s: float = 300) -> bytes | None:
        """The cached value, or ``await loader()``'s, stored only if its lease is still live.

        Arguments, loader values, Redis failures and corrupt entries are handled as by
        ``LeasedCache.get_or_fill``.
        """
        check_key(key)
        check_loader(loader)
        ttl_ms(ttl_s)
        deadline = time.monotonic() + self.max_wait_s
        step = 0
        while True:
            try:
                got = await self.get(key)
            except REDIS_ERRORS as error:
                self._redis_failed(key, error)
                return await loaded_value(loader)
            except CorruptEntryError as error:
                self._corrupt(key, error)
                return await loaded_value(loader)
            if isinstance(got, Hit):
                return got.value
            if isinstance(got, Lease):
                return await self._load_and_fill(key, got.token, loader, ttl_s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.tally.add("loads_without_fill")
                return await loaded_value(loader)
            if step == 0:
                self.tally.add("waits")
            await asyncio.sleep(next_wait_s(step, remaining, self.rng))
            step += 1

    async def _load_and_fill(
        self, key: str, token: str, loader: AsyncLoader, ttl_s: float
    ) -> bytes | None:
        started_ms = now_ms()  # the loaded state is at least this new
        try:
            value = await loaded_value(loader)
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
