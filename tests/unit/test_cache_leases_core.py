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
    Hit,
    Lease,
    encode_value,
    marker,
    next_wait_s,
    read_result,
    ttl_ms,
)
from syncer.config import TableConfig, parse_config
from syncer.core.coalesce import coalesce_latest_per_key
from syncer.core.plan import bulk_refresh, plan_cache_keys
from syncer.errors import ConfigError
from syncer.sinks.search import send_bulk

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
    assert client.calls == [
        {"body": b"", "params": {}},
        {"body": b"", "params": {"refresh": "wait_for"}},
    ]


def test_replies_are_classified_as_hit_lease_or_busy() -> None:
    """nil is this reader's lease, a marker is another's, the absence entry is Hit(None)."""
    assert read_result(None, "t1") == Lease("t1")
    assert read_result(marker("other"), "t1") == Busy()
    assert read_result(ABSENT_VALUE, "t1") == Hit(None)
    assert read_result(b"value", "t1") == Hit(b"value")


def test_values_are_encoded_as_bytes_and_reserved_ones_refused() -> None:
    """str is stored UTF-8, None as the absence entry; the reserved prefix is refused."""
    assert encode_value("prix: 10 €") == "prix: 10 €".encode()
    assert encode_value(bytearray(b"\x00\xff")) == b"\x00\xff"
    assert encode_value(None) == ABSENT_VALUE
    assert marker("ab").startswith(LEASE_PREFIX)
    with pytest.raises(ValueError, match="reserved"):
        encode_value(RESERVED_PREFIX + b"anything")


def test_ttl_is_whole_positive_milliseconds() -> None:
    """A TTL in seconds becomes milliseconds; zero or negative is refused."""
    assert ttl_ms(300) == 300_000
    assert ttl_ms(0.25) == 250
    with pytest.raises(ValueError, match="positive"):
        ttl_ms(0)


def test_waits_double_up_to_the_cap_and_never_pass_the_deadline() -> None:
    """Waiting readers back off exponentially with jitter, capped, within the time left."""
    rng = random.Random(7)
    waits = [next_wait_s(step, 10.0, rng) for step in range(12)]
    assert all(0 < w <= MAX_WAIT_STEP_S for w in waits)
    assert waits[-1] > waits[0]
    assert next_wait_s(10, 0.001, rng) <= 0.001
