"""What a leased cache key holds: values in an envelope with their load time, behind a reserved prefix.

docs/cache-consistency.md, "Stored format". Pure: no Redis here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Cached values never start with this prefix: lease markers and the entries ``fill`` stores do.
# NUL first, so no text, JSON or UTF-8 value can collide with it; ``fill`` refuses such values.
RESERVED_PREFIX = b"\x00syncer:"
LEASE_PREFIX = RESERVED_PREFIX + b"lease:"
# The entries ``fill`` stores: the value or the "no such item" answer behind the epoch
# milliseconds at which its load began.
VALUE_PREFIX = RESERVED_PREFIX + b"value:"  # + b"<loaded_at_ms>:" + the value
ABSENT_PREFIX = RESERVED_PREFIX + b"absent:"  # + b"<loaded_at_ms>"
# What versions before the envelope stored for "no such item" (plain values had no prefix).
ABSENT_VALUE = RESERVED_PREFIX + b"absent"
# Milliseconds are 1 to 19 ASCII digits: a signed 64-bit count, no sign, spaces or underscores.
_MAX_MS_DIGITS = 19

# What a loader may return: bytes-like values are stored as they are, str as UTF-8, None is
# "no such item". Anything else (an int, a list, a dict) is a TypeError: bytes(5) would be five
# zero bytes and bytes([104, 105]) b"hi", a wrong value stored without a word.
Value = bytes | bytearray | memoryview | str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What a cache key holds, lease markers aside: the value and when its load began."""

    value: bytes | None  # None: the "no such item" entry
    loaded_at_ms: int | None  # None: an entry written before envelopes (old format)


class CorruptEntryError(ValueError):
    """A key holds bytes behind the reserved prefix that this library did not write.

    ``get`` raises it; ``get_or_fill`` serves the loader's value around it and counts
    ``corrupt_entries``.
    """


def now_ms() -> int:
    """This host's wall clock in epoch milliseconds: what an entry's ``loaded_at_ms`` holds."""
    return time.time_ns() // 1_000_000


def as_bytes(value: object, what: str = "value") -> bytes | None:
    """A loaded value as readers get it back: bytes-like as is, str as UTF-8, None stays None.

    ``what`` names the value in errors ("the loader's value", "value"). Any other type is a
    TypeError naming it; a value that starts with the reserved prefix could be mistaken for an
    entry or a lease: ValueError.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 text holds it
            raise ValueError(f"{what} is a str that is not valid UTF-8: {error}") from None
    elif isinstance(value, bytes | bytearray | memoryview):
        encoded = bytes(value)
    else:
        raise TypeError(
            f"{what} must be bytes, bytearray, memoryview, str (stored as UTF-8) or None "
            f"(no such item), not {type(value).__name__}: encode it yourself (json.dumps(...)"
            ".encode(), ...)"
        )
    if encoded.startswith(RESERVED_PREFIX):
        raise ValueError(
            f"{what} may not start with {RESERVED_PREFIX!r}, reserved for lease markers"
        )
    return encoded


def check_ms(loaded_at_ms: object, name: str = "loaded_at_ms") -> int:
    """``loaded_at_ms`` as epoch milliseconds: an int of at most 19 digits, not negative."""
    if isinstance(loaded_at_ms, bool) or not isinstance(loaded_at_ms, int):
        raise TypeError(
            f"{name} must be an int of epoch milliseconds, not {type(loaded_at_ms).__name__}"
        )
    if not 0 <= loaded_at_ms < 10**_MAX_MS_DIGITS:
        raise ValueError(f"{name} must be epoch milliseconds, got {loaded_at_ms!r}")
    return loaded_at_ms


def encode_entry(value: Value | None, loaded_at_ms: int) -> bytes:
    """The bytes ``fill`` stores: the value (or "no such item") behind its load's start time."""
    checked = as_bytes(value)
    stamp = str(check_ms(loaded_at_ms)).encode("ascii")
    if checked is None:
        return ABSENT_PREFIX + stamp
    return VALUE_PREFIX + stamp + b":" + checked


def decode_entry(stored: bytes) -> CacheEntry | None:
    """What a raw GET of a cache key returned; None for a lease marker.

    Entries written before envelopes read back with ``loaded_at_ms`` None: a plain value as
    itself, the old absence entry as "no such item". Any other reserved-prefix value is not
    something this library wrote: ``CorruptEntryError`` (a ValueError).
    """
    if isinstance(stored, bytearray | memoryview):
        stored = bytes(stored)
    elif not isinstance(stored, bytes):
        raise TypeError(
            f"stored must be the bytes a GET returned, not {type(stored).__name__} (a client "
            "with decode_responses=True returns str: LeasedCache needs bytes)"
        )
    if stored.startswith(LEASE_PREFIX):
        return None
    if stored.startswith(VALUE_PREFIX):
        stamp, colon, value = stored[len(VALUE_PREFIX) :].partition(b":")
        if colon:
            return CacheEntry(value, parse_ms(stamp, stored))
    elif stored.startswith(ABSENT_PREFIX):
        return CacheEntry(None, parse_ms(stored[len(ABSENT_PREFIX) :], stored))
    elif stored == ABSENT_VALUE:
        return CacheEntry(None, None)
    elif not stored.startswith(RESERVED_PREFIX):
        return CacheEntry(stored, None)
    raise CorruptEntryError(f"not a cache entry that LeasedCache writes: {stored[:48]!r}")


def parse_ms(stamp: bytes, whole: object) -> int:
    """The milliseconds of an entry or a token; ``CorruptEntryError`` when they are not."""
    if not (0 < len(stamp) <= _MAX_MS_DIGITS and stamp.isdigit()):
        raise CorruptEntryError(f"bad milliseconds {stamp!r} in {whole!r}"[:200])
    return int(stamp)
