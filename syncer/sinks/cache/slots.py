"""Which cache keys go together: grouped by Redis Cluster hash slot, cut into UNLINK chunks (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

UNLINK_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """Ask each primary to confirm its UNLINKs reached ``replicas`` replicas (``WAIT``).

    A primary answers an UNLINK before its replicas have it; if it dies then, the promoted
    replica still holds the key. With a wait, a record is acknowledged only once the
    invalidation also reached that many replicas (``[redis] wait_replicas``).
    """

    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Unlink:
    """One ``UNLINK`` of keys that share a hash slot, possibly redirected by an ASK answer."""

    slot: int
    keys: tuple[str, ...]
    ask_node: str | None = None  # "host:port" to send ASKING + UNLINK to, during a migration


def unlinks_by_slot(keys: Iterable[str], slot_of: Callable[[str], int]) -> list[Unlink]:
    """The keys grouped by hash slot, in slot order, each group cut into UNLINK_CHUNK keys.

    A multi-key command whose keys are in different slots fails with CROSSSLOT, even in a
    pipeline (REFERENCE.md), so every command here stays inside one slot.
    """
    by_slot: dict[int, list[str]] = defaultdict(list)
    for key in sorted(set(keys)):
        by_slot[slot_of(key)].append(key)
    return [
        Unlink(slot, tuple(slot_keys[start : start + UNLINK_CHUNK]))
        for slot, slot_keys in sorted(by_slot.items())
        for start in range(0, len(slot_keys), UNLINK_CHUNK)
    ]


def key_slot(key: str) -> int:
    """The cluster hash slot of ``key``: CRC16 of its hash tag (or whole key) mod 16384."""
    from redis.crc import key_slot as crc16_slot

    return int(crc16_slot(key.encode("utf-8")))


def _slot_function() -> Callable[[str], int]:
    """``key_slot`` with redis-py's CRC16 looked up once (it runs once per key)."""
    from redis.crc import key_slot as crc16_slot

    return lambda key: int(crc16_slot(key.encode("utf-8")))
