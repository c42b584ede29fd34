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

This module is the import path (docs/api.md); the code lives in ``client/entries.py`` (the stored
format), ``client/leases.py`` (tokens, scripts, counters, arguments), ``client/leasedcache.py``
and ``client/asyncleasedcache.py``.
"""

from syncer.client.asyncleasedcache import AsyncLeasedCache
from syncer.client.entries import (
    ABSENT_PREFIX,
    ABSENT_VALUE,
    LEASE_PREFIX,
    RESERVED_PREFIX,
    VALUE_PREFIX,
    CacheEntry,
    CorruptEntryError,
    Value,
    as_bytes,
    decode_entry,
    encode_entry,
    now_ms,
)
from syncer.client.leasedcache import LeasedCache
from syncer.client.leases import (
    FIRST_WAIT_S,
    MAX_WAIT_STEP_S,
    REDIS_ERRORS,
    AsyncLoader,
    Busy,
    CacheRead,
    Hit,
    Lease,
    LeaseCounters,
    Loader,
    fill_args,
    lease_granted_at_ms,
    marker,
    new_token,
    next_wait_s,
    read_result,
    ttl_ms,
)

__all__ = [
    "ABSENT_PREFIX",
    "ABSENT_VALUE",
    "FIRST_WAIT_S",
    "LEASE_PREFIX",
    "MAX_WAIT_STEP_S",
    "REDIS_ERRORS",
    "RESERVED_PREFIX",
    "VALUE_PREFIX",
    "AsyncLeasedCache",
    "AsyncLoader",
    "Busy",
    "CacheEntry",
    "CacheRead",
    "CorruptEntryError",
    "Hit",
    "Lease",
    "LeaseCounters",
    "LeasedCache",
    "Loader",
    "Value",
    "as_bytes",
    "decode_entry",
    "encode_entry",
    "fill_args",
    "lease_granted_at_ms",
    "marker",
    "new_token",
    "next_wait_s",
    "now_ms",
    "read_result",
    "ttl_ms",
]
