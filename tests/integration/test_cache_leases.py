"""The fill/invalidate race, driven step by step through the real lambda_handler, Redis and moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from syncer import handler
from syncer.client.cachefill import LeasedCache, decode_entry
from tests.integration.conftest import REDIS_CLUSTER_URL, REDIS_URL, Stack

pytestmark = pytest.mark.integration

# The race also runs with syncer and the readers on the local Redis Cluster (ports 7000-7005).
TARGETS = ["single", "cluster"]  # scripts/services.sh up starts both
PK, SK = "prod-race", "v"


@pytest.fixture(params=TARGETS)
def cache_client(request: pytest.FixtureRequest, stack: Stack) -> Iterator[Any]:
    """The Redis the readers use; syncer's handler invalidates the same one."""
    if request.param == "single":
        client = redis.Redis.from_url(REDIS_URL)  # the stack's config points syncer here
        yield client
        client.close()
        return
    cluster = redis.RedisCluster.from_url(REDIS_CLUSTER_URL)
    handler._get_container().sinks.redis = cluster
    yield cluster
    cluster.close()


def _item(price: str, category: str = "shoes", pk: str = PK) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": SK}, "price": {"N": price}, "category": {"S": category}}


def _read_item(stack: Stack, pk: str = PK) -> bytes | None:
    """What a reader caches for an item: its price, read with a strongly consistent GetItem."""
    got = stack.dynamodb.get_item(
        TableName=stack.table, Key={"pk": {"S": pk}, "sk": {"S": SK}}, ConsistentRead=True
    )
    item = got.get("Item")
    return None if item is None else item["price"]["N"].encode()


def _cached_value(client: Any, key: str) -> bytes | None:
    """The value a leased fill stored in ``key`` (its envelope taken off)."""
    entry = decode_entry(client.get(key))
    assert entry is not None
    return entry.value


def _deliver_ok(stack: Stack) -> None:
    responses = stack.deliver()
    assert responses
    assert all(r == {"batchItemFailures": []} for r in responses)


def _race(stack: Stack, fill_from_cache: Callable[[Callable[[], bytes | None]], object]) -> object:
    """Reader loads v1 and stalls; the item becomes v2 and syncer applies it; the reader resumes."""
    loaded, applied = threading.Event(), threading.Event()

    def stalled_loader() -> bytes | None:
        value = _read_item(stack)
        loaded.set()
        assert applied.wait(30)
        return value

    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(fill_from_cache(stalled_loader)))
    reader.start()
    assert loaded.wait(30)
    stack.put(_item("20"))  # the writer: v1 -> v2
    _deliver_ok(stack)  # syncer: the batch with v2 applied, the key invalidated
    applied.set()
    reader.join(30)
    assert not reader.is_alive()
    return outcome[0]


def test_leased_fill_racing_an_update_never_caches_the_old_version(
    stack: Stack, cache_client: Any
) -> None:
    """A reader that loaded v1 before syncer applied v2 cannot store v1: the key ends absent."""
    # given an item at v1, synced, and its cache key absent
    stack.put(_item("10"))
    _deliver_ok(stack)
    key = f"product:{PK}"
    cache_client.unlink(key)
    cache = LeasedCache(cache_client)
    # when a leased fill loads v1, stalls while v2 is written and applied, then resumes
    returned = _race(stack, lambda loader: cache.get_or_fill(key, loader))
    # then the reader got v1 (it read before the write) but the cache never holds it
    assert returned == b"10"
    assert cache_client.get(key) is None
    assert cache.counters().fills_refused == 1
    # and the next reader caches v2
    assert cache.get_or_fill(key, lambda: _read_item(stack)) == b"20"
    assert _cached_value(cache_client, key) == b"20"


def test_plain_cache_aside_racing_an_update_caches_the_old_version(
    stack: Stack, cache_client: Any
) -> None:
    """Without leases the same interleaving leaves v1 cached after every invalidation ran."""
    stack.put(_item("10"))
    _deliver_ok(stack)
    key = f"product:{PK}"
    cache_client.unlink(key)

    def cache_aside(loader: Callable[[], bytes | None]) -> bytes | None:
        value = cache_client.get(key)
        if value is None:
            value = loader()
            if value is not None:
                cache_client.set(key, value, ex=300)
        return value  # type: ignore[no-any-return]

    _race(stack, cache_aside)
    assert cache_client.get(key) == b"10"  # stale until its TTL: the race leases prevent


@pytest.fixture
def reader_redis() -> Iterator[Any]:
    """A reader's own client on the Redis that the stack's syncer invalidates."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def _use_search_cache_keys(stack: Stack, as_search_keys: bool) -> None:
    """Add ``listing:{category}`` to the table's config, as a search cache key or an item key."""
    setting = "search_cache_keys" if as_search_keys else "cache_keys"
    text = stack.config_path.read_text()
    if as_search_keys:
        text = text.replace(
            'exclude_attributes = ["cost"]\n',
            'exclude_attributes = ["cost"]\nsearch_cache_keys = ["listing:{category}"]\n',
        )
    else:
        text = text.replace(
            '"category:{category}"]', '"category:{category}", "listing:{category}"]'
        )
    assert setting in text
    assert "listing:{category}" in text
    stack.config_path.write_text(text)
    handler.reset_container()


def _listing(stack: Stack, category: str) -> bytes:
    """A search-derived value: the prices of a category's items, from a search query."""
    response = stack.sinks.opensearch.search(
        index=stack.index,
        body={"query": {"term": {"category": category}}, "size": 100},
    )
    prices = sorted(hit["_source"]["price"] for hit in response["hits"]["hits"])
    return json.dumps(prices).encode()


def test_search_derived_key_refilled_right_after_invalidation_sees_the_change(
    stack: Stack, reader_redis: Any
) -> None:
    """A listing refilled from search right after syncer's invalidation holds the new price."""
    # given a table whose listing:{category} keys are filled from search results
    _use_search_cache_keys(stack, as_search_keys=True)
    stack.put(_item("10"))
    stack.put(_item("30", pk="prod-other"))
    _deliver_ok(stack)
    stack.indexed()  # refreshed: the listing below is searchable
    cache = LeasedCache(reader_redis)
    key = "listing:shoes"
    assert cache.get_or_fill(key, lambda: _listing(stack, "shoes")) == b"[10, 30]"
    # when the price changes and the handler returns, and a reader refills at once
    stack.put(_item("20"))
    _deliver_ok(stack)
    refilled = cache.get_or_fill(key, lambda: _listing(stack, "shoes"))
    # then the refill saw the change: syncer invalidated only once it was searchable
    assert refilled == b"[20, 30]"
    assert _cached_value(reader_redis, key) == b"[20, 30]"


def test_search_derived_key_as_an_item_key_is_refilled_with_the_old_result(
    stack: Stack, reader_redis: Any
) -> None:
    """Declared as a plain cache key, a listing refilled right after invalidation is stale."""
    _use_search_cache_keys(stack, as_search_keys=False)
    stack.put(_item("10"))
    _deliver_ok(stack)
    client = stack.sinks.opensearch
    client.indices.refresh(index=stack.index)
    # No automatic refresh: what search sees changes only when refreshed (deterministic here;
    # with the default 1 s interval the refill is stale unless a refresh happens in between).
    client.indices.put_settings(index=stack.index, body={"index": {"refresh_interval": "-1"}})
    cache = LeasedCache(reader_redis)
    key = "listing:shoes"
    assert cache.get_or_fill(key, lambda: _listing(stack, "shoes")) == b"[10]"
    stack.put(_item("20"))
    _deliver_ok(stack)
    assert cache.get_or_fill(key, lambda: _listing(stack, "shoes")) == b"[10]"  # stale
