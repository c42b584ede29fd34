"""The Redis sink: invalidate cache keys with UNLINK, all of a batch in one pipelined round trip."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from syncer.config import RedisConfig

UNLINK_CHUNK = 1000


def invalidate(client: Any, keys: Collection[str]) -> int:
    """Delete ``keys`` and return how many existed.

    UNLINK frees memory off Redis's main thread, and it is idempotent, so the whole pipeline may
    be sent again after a connection error (redis-py re-sends non-transactional pipelines).
    """
    if not keys:
        return 0
    ordered = sorted(keys)
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(ordered), UNLINK_CHUNK):
        pipe.unlink(*ordered[start : start + UNLINK_CHUNK])
    return sum(int(removed) for removed in pipe.execute())


def make_client(settings: RedisConfig, password: str | None = None) -> Any:
    """A redis-py client with its own retries off and explicit timeouts (REFERENCE.md).

    ``rediss://`` URLs use TLS (verified against ``ca_certs`` when given); ``username`` and the
    password select a Redis ACL user.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {
        "socket_timeout": settings.timeout_s,
        "socket_connect_timeout": settings.timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }
    if settings.username:
        options["username"] = settings.username
    if password is not None:
        options["password"] = password
    if settings.ca_certs and settings.url.startswith("rediss://"):
        options["ssl_ca_certs"] = settings.ca_certs
    return redis.Redis.from_url(settings.url, **options)
