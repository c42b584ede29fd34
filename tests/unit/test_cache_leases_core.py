"""Search-derived cache keys and the pure parts of the lease protocol, without any server."""

from __future__ import annotations

import random
import tomllib
from typing import Any

import pytest

from syncer.client.cachefill import (
    ABSENT_VALUE,
    LEASE_PREFIX,
    MAX_WAIT_STEP_S,
    RESERVED_PREFIX,
    Busy,
    CacheEntry,
    Hit,
    Lease,
    as_bytes,
    decode_entry,
    encode_entry,
    lease_granted_at_ms,
    marker,
    new_token,
    next_wait_s,
    read_result,
    ttl_ms,
)
from syncer.config import TableConfig, parse_config
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.plan import bulk_refresh, plan_cache_keys
from syncer.errors import ConfigError
from syncer.sinks.search import send_bulk
from syncer.sinks.search.bulk import BULK_FILTER

CONFIG = """
[[tables]]
name = "catalog"
index = "catalog"
cache_keys = ["product:{pk}"]
search_cache_keys = ["listing:{category}", "brand:{brand}:top"]
"""
ITEMS_ONLY = TableConfig(name="catalog", index="catalog", cache_keys=("product:{pk}",))
WITH_SEARCH = TableConfig(
    name="catalog",
    index="catalog",
    cache_keys=("product:{pk}",),
    search_cache_keys=("listing:{category}",),
)


def test_search_cache_keys_are_read_from_the_table_config() -> None:
    """``search_cache_keys`` is a list of templates next to ``cache_keys``."""
    config = parse_config(tomllib.loads(CONFIG), environ={})
    table = config.tables[0]
    assert table.search_cache_keys == ("listing:{category}", "brand:{brand}:top")
    assert table.cache_key_fields == frozenset({"pk", "category", "brand"})


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        (["listing:{}"], r"search_cache_keys template 'listing:\{\}' needs named placeholders"),
        (["listing:{category"], r"search_cache_keys has a bad template"),
        ("listing:{category}", r"search_cache_keys must be a list of strings"),
    ],
)
def test_bad_search_cache_keys_are_refused(templates: Any, message: str) -> None:
    """Search cache key templates are validated like cache_keys, and named in the error."""
    raw = tomllib.loads(CONFIG)
    raw["tables"][0]["search_cache_keys"] = templates
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, environ={})


def test_search_cache_keys_are_rendered_with_the_item_keys(make_record) -> None:
    """A change clears its search-derived keys (old and new category) with its item keys."""
    (change,) = coalesce_latest_per_key(
        [
            make_record(
                "MODIFY",
                111000000000000000057,
                new={"category": "boots"},
                old={"category": "shoes"},
            )
        ]
    )
    keys = plan_cache_keys(change, WITH_SEARCH)
    pk = change.latest.keys["pk"]
    assert keys == {f"product:{pk}", "listing:shoes", "listing:boots"}
    assert plan_cache_keys(change, ITEMS_ONLY) == {f"product:{pk}"}


def test_bulk_refreshes_only_when_a_table_has_search_cache_keys() -> None:
    """``true`` when any table written has search cache keys; the index's refresh otherwise."""
    assert bulk_refresh([ITEMS_ONLY, WITH_SEARCH]) == "true"
    assert bulk_refresh([ITEMS_ONLY]) is None
    assert bulk_refresh([]) is None


class _RecordingClient:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def bulk(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"items": []}


def test_send_bulk_passes_refresh_only_when_asked() -> None:
    """``refresh`` reaches the ``_bulk`` request when given and is absent otherwise."""
    client = _RecordingClient()
    send_bulk(client, b"", [])
    send_bulk(client, b"", [], refresh="wait_for")
    trimmed = {"filter_path": BULK_FILTER}  # every answer is trimmed to what is read
    assert client.calls == [
        {"body": b"", "params": trimmed},
        {"body": b"", "params": {**trimmed, "refresh": "wait_for"}},
    ]


def test_replies_are_classified_as_hit_lease_or_busy() -> None:
    """nil is this reader's lease, a marker is another's, entries (old or new) are Hits."""
    assert read_result(None, "t1") == Lease("t1")
    assert read_result(marker("other"), "t1") == Busy()
    assert read_result(ABSENT_VALUE, "t1") == Hit(None)
    assert read_result(b"value", "t1") == Hit(b"value")
    assert read_result(encode_entry(b"value", 5), "t1") == Hit(b"value")
    assert read_result(encode_entry(None, 5), "t1") == Hit(None)


def test_values_are_bytes_and_reserved_ones_refused() -> None:
    """str is stored UTF-8, bytes-like as bytes, None stays None; the reserved prefix is refused."""
    assert as_bytes("prix: 10 €") == "prix: 10 €".encode()
    assert as_bytes(bytearray(b"\x00\xff")) == b"\x00\xff"
    assert as_bytes(None) is None
    assert marker("ab").startswith(LEASE_PREFIX)
    with pytest.raises(ValueError, match="reserved"):
        as_bytes(RESERVED_PREFIX + b"anything")
    with pytest.raises(ValueError, match="reserved"):
        encode_entry(RESERVED_PREFIX + b"lease:forged", 1)


def test_an_entry_carries_its_load_time_behind_the_reserved_prefix() -> None:
    """A value is stored as prefix, "value:", the milliseconds, ":" and the bytes unchanged."""
    stored = encode_entry(b"v:1\x00", 1_733_467_200_123)
    assert stored == b"\x00syncer:value:1733467200123:v:1\x00"
    assert decode_entry(stored) == CacheEntry(b"v:1\x00", 1_733_467_200_123)
    assert encode_entry("", 7) == b"\x00syncer:value:7:"
    assert decode_entry(encode_entry("", 7)) == CacheEntry(b"", 7)


def test_the_absence_entry_carries_its_load_time() -> None:
    """None ("no such item") is stored as prefix, "absent:" and the milliseconds."""
    assert encode_entry(None, 42) == b"\x00syncer:absent:42"
    assert decode_entry(b"\x00syncer:absent:42") == CacheEntry(None, 42)


def test_entries_written_before_envelopes_read_with_no_time() -> None:
    """A plain value and the old absence entry stay readable, with loaded_at_ms None."""
    assert decode_entry(b'{"price": 10}') == CacheEntry(b'{"price": 10}', None)
    assert decode_entry(b"") == CacheEntry(b"", None)
    assert decode_entry(b"\x00syncer:absent") == CacheEntry(None, None)


def test_a_lease_marker_is_no_entry() -> None:
    """decode_entry answers None for another reader's lease marker."""
    assert decode_entry(marker(new_token(1))) is None


@pytest.mark.parametrize(
    "stored",
    [
        b"\x00syncer:value:12",  # no separator after the time
        b"\x00syncer:value::v",  # no time
        b"\x00syncer:value:-5:v",
        b"\x00syncer:value:1_0:v",
        b"\x00syncer:value: 10:v",
        b"\x00syncer:value:99999999999999999999:v",  # 20 digits
        b"\x00syncer:absent:",
        b"\x00syncer:absent:x",
        b"\x00syncer:absentee",
        b"\x00syncer:something-newer",
    ],
)
def test_malformed_reserved_entries_are_refused(stored: bytes) -> None:
    """A reserved-prefix value this library does not write is a clear error, not data."""
    with pytest.raises(ValueError, match=r"cache entry|milliseconds"):
        decode_entry(stored)


@pytest.mark.parametrize("loaded_at_ms", [-1, 10**19])
def test_an_impossible_load_time_is_refused(loaded_at_ms: int) -> None:
    """Milliseconds are a non-negative count that fits in 19 digits."""
    with pytest.raises(ValueError, match="epoch milliseconds"):
        encode_entry(b"v", loaded_at_ms)


@pytest.mark.parametrize("loaded_at_ms", [True, 1.5, "5"])
def test_a_load_time_that_is_no_int_is_a_type_error(loaded_at_ms: Any) -> None:
    """A bool, float or text is no count of milliseconds: TypeError naming the argument."""
    with pytest.raises(TypeError, match="loaded_at_ms must be an int of epoch milliseconds"):
        encode_entry(b"v", loaded_at_ms)


def test_a_lease_token_tells_when_it_was_asked_for() -> None:
    """new_token puts the grant time in front of 128 random bits; fill reads it back."""
    token = new_token(1_733_467_200_123)
    assert lease_granted_at_ms(token) == 1_733_467_200_123
    assert token != new_token(1_733_467_200_123)
    with pytest.raises(ValueError, match="lease token"):
        lease_granted_at_ms("deadbeef")


def test_ttl_is_whole_positive_milliseconds() -> None:
    """A TTL in seconds becomes milliseconds; zero, negative or not finite is refused."""
    assert ttl_ms(300) == 300_000
    assert ttl_ms(0.25) == 250
    for bad in (0, -1, 0.0001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            ttl_ms(bad)
    for wrong_type in (True, "300", None):
        with pytest.raises(TypeError, match="ttl_s must be a number of seconds"):
            ttl_ms(wrong_type)  # type: ignore[arg-type]


def test_waits_double_up_to_the_cap_and_never_pass_the_deadline() -> None:
    """Waiting readers back off exponentially with jitter, capped, within the time left."""
    rng = random.Random(7)
    waits = [next_wait_s(step, 10.0, rng) for step in range(12)]
    assert all(0 < w <= MAX_WAIT_STEP_S for w in waits)
    assert waits[-1] > waits[0]
    assert next_wait_s(10, 0.001, rng) <= 0.001
