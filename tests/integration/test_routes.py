"""A single-table catalog routed to three indices, through the real handler and ``syncer run``."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncer import handler
from syncer.cli import main
from syncer.commands.reindex import ReindexOptions, reindex_table
from syncer.commands.verify import verify_table
from syncer.core.records import document_id
from syncer.pipeline import process_batch
from syncer.runner.poller import PollOptions
from syncer.runner.run import run_poller
from tests.integration.conftest import OPENSEARCH_URL, REDIS_URL
from tests.integration.faults import opensearch_proxy, redis_proxy
from tests.integration.routed_catalog import (
    TRANSFORM,
    RoutedCacheReader,
    RoutedCatalog,
    RoutedHistoryMaker,
    category,
    product,
    review,
    routed_catalog,
    write_routed_config,
)
from tests.integration.simulator import LambdaPoller
from tests.integration.test_delivery_simulation import drive_history, flaky_invoke
from tests.integration.test_faults import faulty_invoke

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view_type: str
) -> Iterator[RoutedCatalog]:
    yield from routed_catalog(tmp_path, monkeypatch, view_type)


def _id(pk: str, sk: str) -> str:
    return document_id({"pk": pk, "sk": sk})


def _put(catalog: RoutedCatalog, *items: dict[str, Any]) -> None:
    for item in items:
        catalog.stack.put(item)


def _deadletters(catalog: RoutedCatalog) -> list[dict[str, Any]]:
    path = Path(catalog.stack.config.deadletter.file or "")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _seed(catalog: RoutedCatalog) -> None:
    _put(
        catalog,
        product("1"),
        product("2", category="hats"),
        review("1", 1),
        review("1", 2, stars=3),
        category("shoes"),
        category("hats"),
        {"pk": {"S": "ORDER#9"}, "sk": {"S": "ORDER#9"}, "type": {"S": "order"}},
    )


def test_each_index_holds_exactly_its_entities(catalog: RoutedCatalog) -> None:
    """Products, reviews and categories land in their own indices; an order is skipped."""
    # given a catalog of two products, two reviews, two categories and one order
    _seed(catalog)
    # when the stream is delivered through the Lambda handler
    responses = catalog.stack.deliver()
    # then nothing is retried and each index holds exactly its entities
    assert all(r == {"batchItemFailures": []} for r in responses)
    catalog.assert_converged()
    assert sorted(catalog.indexed("products")) == [
        _id("PRODUCT#1", "PRODUCT#1"),
        _id("PRODUCT#2", "PRODUCT#2"),
    ]
    assert sorted(catalog.indexed("reviews")) == [
        _id("PRODUCT#1", "REVIEW#1"),
        _id("PRODUCT#1", "REVIEW#2"),
    ]
    assert sorted(catalog.indexed("categories")) == [
        _id("CATEGORY#hats", "CATEGORY#hats"),
        _id("CATEGORY#shoes", "CATEGORY#shoes"),
    ]
    # and the transform shaped products, without the excluded cost
    shoe = catalog.indexed("products")[_id("PRODUCT#1", "PRODUCT#1")]
    assert shoe["search_name"] == "trail shoe 1"
    assert "cost" not in shoe
    assert _deadletters(catalog) == []


def test_an_item_that_changes_type_moves_with_no_ghost(catalog: RoutedCatalog) -> None:
    """A product turned review leaves products (tombstone) and both routes' cache keys are cleared."""
    # given product 1 indexed and its cache keys filled
    _seed(catalog)
    catalog.stack.deliver()
    redis = catalog.stack.sinks.redis
    redis.mset(
        {"product:PRODUCT#1": "old", "category:shoes": "old", "review:PRODUCT#1:PRODUCT#1": "old"}
    )
    # when its type becomes "review" and the change is delivered
    _put(catalog, {**product("1"), "type": {"S": "review"}})
    response = catalog.stack.invoke(catalog.stack.new_records())
    # then it is in reviews only, no ghost is left in products, and every cache key is gone
    assert response == {"batchItemFailures": []}
    catalog.assert_converged()
    assert _id("PRODUCT#1", "PRODUCT#1") not in catalog.indexed("products")
    assert _id("PRODUCT#1", "PRODUCT#1") in catalog.indexed("reviews")
    assert redis.exists("product:PRODUCT#1", "category:shoes", "review:PRODUCT#1:PRODUCT#1") == 0
    # and products holds a tombstone with the change's sequence number, like a delete's
    raw = catalog.stack.sinks.opensearch.get(
        index=f"{catalog.prefix}-products", id=_id("PRODUCT#1", "PRODUCT#1")
    )
    assert raw["_source"]["_syncer"]["deleted"] is True


def test_an_older_change_delivered_late_cannot_bring_a_moved_item_back(
    catalog: RoutedCatalog,
) -> None:
    """After a move, the earlier record redelivered (bisect, replay) leaves the old index empty."""
    # given a product, then its move to reviews, both delivered
    _put(catalog, product("7"))
    first = catalog.stack.new_records()
    catalog.stack.invoke(first)
    _put(catalog, {**product("7"), "type": {"S": "review"}})
    catalog.stack.invoke(catalog.stack.new_records())
    # when the first record is delivered again
    assert catalog.stack.invoke(first) == {"batchItemFailures": []}
    # then the product is still only in reviews
    catalog.assert_converged()
    assert catalog.indexed("products") == {}


def test_a_move_delivered_after_a_newer_move_back_leaves_no_ghost(catalog: RoutedCatalog) -> None:
    """A move to reviews arriving after the later move back (bisect) cannot land in reviews.

    This is why every route index gets a tombstone, absent documents included: with
    tombstones only over live documents, reviews held nothing to order the late move against.
    """
    # given a product, its move to reviews and its move back, as three records
    _put(catalog, product("8"))
    _put(catalog, {**product("8"), "type": {"S": "review"}})
    _put(catalog, product("8", category="hats"))
    first, move, back = catalog.stack.new_records()
    # when the first is delivered, then both moves (coalesced: only the move back is applied),
    # then the move to reviews alone, as Lambda's bisection can deliver it
    for batch in ([first], [move, back], [move]):
        assert catalog.stack.invoke(batch) == {"batchItemFailures": []}
    # then the product is in products only
    catalog.assert_converged()
    assert catalog.indexed("reviews") == {}


def test_a_hidden_product_and_an_unrouted_item_leave_their_index(catalog: RoutedCatalog) -> None:
    """A transform returning None, or a type no route selects, tombstones the item's index."""
    # given product 2 and review 1/1 indexed
    _seed(catalog)
    catalog.stack.deliver()
    # when product 2 is hidden and review 1/1 becomes a "question" (no route) in one batch
    _put(catalog, product("2", category="hats", hidden={"BOOL": True}))
    _put(catalog, {**review("1", 1), "type": {"S": "question"}})
    response = catalog.stack.invoke(catalog.stack.new_records())
    # then both are gone from search and nothing is dead-lettered
    assert response == {"batchItemFailures": []}
    catalog.assert_converged()
    assert _id("PRODUCT#2", "PRODUCT#2") not in catalog.indexed("products")
    assert _id("PRODUCT#1", "REVIEW#1") not in catalog.indexed("reviews")
    assert _deadletters(catalog) == []


def test_a_transform_that_raises_dead_letters_only_that_record(catalog: RoutedCatalog) -> None:
    """One product the transform fails on is dead-lettered with the callable's name; the rest land."""
    # given a batch with a poison product among good items
    _seed(catalog)
    _put(catalog, product("3", poison={"S": "x"}))
    # when it is delivered in one invocation
    response = catalog.stack.invoke(catalog.stack.new_records())
    # then nothing is retried, only that record is dead-lettered, and the others are indexed
    assert response == {"batchItemFailures": []}
    (letter,) = _deadletters(catalog)
    assert TRANSFORM in letter["error"]["message"]
    assert "ValueError" in letter["error"]["message"]
    assert letter["record"]["dynamodb"]["Keys"]["pk"] == {"S": "PRODUCT#3"}
    assert sorted(catalog.indexed("products")) == [
        _id("PRODUCT#1", "PRODUCT#1"),
        _id("PRODUCT#2", "PRODUCT#2"),
    ]
    assert len(catalog.indexed("reviews")) == 2


@pytest.mark.parametrize("view_type", ["KEYS_ONLY"])
def test_keys_only_stream_routes_the_item_read_from_the_table(catalog: RoutedCatalog) -> None:
    """On a KEYS_ONLY stream the item read from the table decides the route."""
    # given items written, one moved to reviews, one deleted
    _seed(catalog)
    _put(catalog, {**product("2", category="hats"), "type": {"S": "review"}})
    catalog.stack.delete("PRODUCT#1", "REVIEW#2")
    # when the stream is delivered
    responses = catalog.stack.deliver(batch_size=3)
    # then every index equals what its route selects
    assert all(r == {"batchItemFailures": []} for r in responses)
    catalog.assert_converged()


def test_syncer_run_drains_the_routed_stream(catalog: RoutedCatalog, tmp_path: Path) -> None:
    """The local worker (`syncer run --once`) routes like the handler."""
    # given the seeded catalog, a move and a delete
    _seed(catalog)
    _put(catalog, {**review("1", 2), "type": {"S": "question"}})
    catalog.stack.delete("CATEGORY#hats", "CATEGORY#hats")
    # when the worker drains the stream in batches of 4
    summary = run_poller(
        catalog.stack.config,
        PollOptions(once=True, batch_size=4, idle_sleep_s=0.05),
        checkpoint_file=str(tmp_path / "checkpoints.json"),
    )
    # then each index equals what its route selects
    assert summary.caught_up
    catalog.assert_converged()
    assert sorted(catalog.indexed("categories")) == [_id("CATEGORY#shoes", "CATEGORY#shoes")]


def test_unrouted_items_are_counted_and_acknowledged(catalog: RoutedCatalog) -> None:
    """An item no route selects is counted as unrouted, not as indexed, deleted or failed."""
    # given an order (no route) and a product written
    _put(catalog, {"pk": {"S": "ORDER#1"}, "sk": {"S": "ORDER#1"}}, product("5"))
    # when the batch runs through the pipeline
    outcome = process_batch(catalog.stack.new_records(), catalog.stack.config, catalog.stack.sinks)
    # then the order is unrouted and acknowledged, the product indexed
    assert (outcome.unrouted, outcome.indexed, outcome.deleted) == (1, 1, 0)
    assert outcome.failed_sequence_numbers == ()
    assert outcome.dead_lettered == 0


def test_purge_tombstones_walks_every_route_index(catalog: RoutedCatalog) -> None:
    """`syncer purge-tombstones --dry-run` on a routed table counts in each route's index."""
    _seed(catalog)
    catalog.stack.deliver()
    result = CliRunner().invoke(
        main,
        [
            "purge-tombstones",
            "--config",
            str(catalog.stack.config_path),
            "--table",
            catalog.stack.table,
            "--older-than",
            "2d",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("products", "reviews", "categories"):
        assert f"in {catalog.prefix}-{name}-000001" in result.output


def test_setup_dry_run_prints_the_routing_table(catalog: RoutedCatalog) -> None:
    """`syncer setup --dry-run` lists the routes in order and says unrouted items are skipped."""
    result = CliRunner().invoke(
        main, ["setup", "--config", str(catalog.stack.config_path), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert f"1. type equals 'review' -> {catalog.prefix}-reviews" in result.output
    assert f"transform {TRANSFORM}" in result.output
    assert "4. every other item -> skipped" in result.output
    assert f"up to date (alias {catalog.prefix}-categories)" in result.output


def test_reindex_and_verify_repair_converge_on_the_routed_table(catalog: RoutedCatalog) -> None:
    """One reindex rebuilds the three indices; verify --repair fixes drift in every route's index."""
    # given the catalog synced, then drift: a ghost in reviews, a missing product, a stale category
    _seed(catalog)
    catalog.stack.deliver()
    client = catalog.stack.sinks.opensearch
    client.delete(
        index=f"{catalog.prefix}-products", id=_id("PRODUCT#1", "PRODUCT#1"), refresh=True
    )
    client.index(
        index=f"{catalog.prefix}-reviews",
        id=_id("PRODUCT#2", "PRODUCT#2"),
        body={"pk": "PRODUCT#2", "_syncer": {"deleted": False, "seq": 1}},
        refresh=True,
    )
    client.update(
        index=f"{catalog.prefix}-categories",
        id=_id("CATEGORY#hats", "CATEGORY#hats"),
        body={"doc": {"title": "stale"}},
        refresh=True,
    )
    config, sinks, name = catalog.stack.config, catalog.stack.sinks, catalog.stack.table
    # when verify runs, then verify --repair, then verify again
    found = verify_table(config, sinks, name)
    sampled = verify_table(config, sinks, name, sample=50)  # a sample as large as the table
    repaired = verify_table(config, sinks, name, repair=True)
    after = verify_table(config, sinks, name)
    # then the drift is seen, repaired, and gone
    assert (found.missing, found.ghost, found.differing) == (
        [_id("PRODUCT#1", "PRODUCT#1")],
        [_id("PRODUCT#2", "PRODUCT#2")],
        [_id("CATEGORY#hats", "CATEGORY#hats")],
    )
    assert sampled.drift == found.drift
    assert repaired.repaired >= 3
    assert repaired.unrepaired == []
    assert after.drift == 0
    assert verify_table(config, sinks, name, sample=50).drift == 0
    catalog.assert_converged()
    # when the table is reindexed (all three indices in one scan) and a change follows
    result = reindex_table(config, sinks, name, options=ReindexOptions(segments=2, page_size=3))
    _put(catalog, {**product("1"), "type": {"S": "review"}})
    catalog.stack.deliver()
    # then every alias points at a new index, each equal to what its route selects
    assert sorted(alias for alias, _, _ in result.indices) == sorted(catalog.aliases.values())
    assert all(new.endswith("-000002") for _, new, _ in result.indices)
    catalog.assert_converged()
    assert verify_table(config, sinks, name).drift == 0


def test_reindex_of_one_index_leaves_the_others(catalog: RoutedCatalog, tmp_path: Path) -> None:
    """`syncer reindex --index` rebuilds one route's index only."""
    # given the catalog synced
    _seed(catalog)
    catalog.stack.deliver()
    sinks = catalog.stack.sinks
    # when only the reviews index is rebuilt from the command line
    result = CliRunner().invoke(
        main,
        [
            "reindex",
            "--config",
            str(catalog.stack.config_path),
            "--table",
            catalog.stack.table,
            "--index",
            f"{catalog.prefix}-reviews",
            "--segments",
            "1",
        ],
    )
    # then reviews moved to a new index, products did not, and both hold their entities
    assert result.exit_code == 0, result.output
    assert f"alias {catalog.prefix}-reviews -> {catalog.prefix}-reviews-000002" in result.output
    assert sorted(sinks.opensearch.indices.get_alias(name=f"{catalog.prefix}-reviews")) == [
        f"{catalog.prefix}-reviews-000002"
    ]
    assert sorted(sinks.opensearch.indices.get_alias(name=f"{catalog.prefix}-products")) == [
        f"{catalog.prefix}-products-000001"
    ]
    catalog.assert_converged()


def _history(
    catalog: RoutedCatalog, rng: random.Random, poller: LambdaPoller, prefix: str
) -> RoutedCacheReader:
    """Random routed operations interleaved with cache fills, partial deliveries and replays."""
    stack = catalog.stack
    maker = RoutedHistoryMaker(rng, prefix)
    reader = RoutedCacheReader(stack.sinks.redis, prefix, catalog.table_config)
    drive_history(stack, rng, poller, maker, reader, catalog.items)
    return reader


@pytest.mark.parametrize("seed", range(4))
def test_routed_delivery_schedules_converge(catalog: RoutedCatalog, seed: int) -> None:
    """Random batching, retries, bisection and replays over items changing route converge."""
    rng = random.Random(500 + seed)
    poller = LambdaPoller(
        flaky_invoke(rng, error_share=0.2), rng, max_batch=rng.choice([3, 10, 40])
    )
    reader = _history(catalog, rng, poller, prefix=f"rh{seed}-{uuid.uuid4().hex[:6]}")
    catalog.assert_converged()
    assert reader.stale_keys(catalog.items()) == []
    assert poller.stats.invocations > 0


@pytest.mark.parametrize("seed", range(2))
def test_routed_faults_during_delivery_lose_nothing(
    catalog: RoutedCatalog, tmp_path: Path, seed: int
) -> None:
    """With OpenSearch and Redis faults switching on and off, the routed indices still converge."""
    rng = random.Random(700 + seed)
    schedule: Counter[str] = Counter()
    stack = catalog.stack
    with opensearch_proxy(OPENSEARCH_URL, seed) as os_proxy, redis_proxy(REDIS_URL) as redis:
        write_routed_config(
            stack.config_path,
            stack.table,
            catalog.prefix,
            opensearch=f'[opensearch]\nurl = "{os_proxy.url}"\ntimeout_s = 5\n',
            redis=f'[redis]\nurl = "redis://127.0.0.1:{redis.port}/0"\ntimeout_s = 1\n',
            resilience="[resilience]\nmax_attempts = 3\ninitial_backoff_s = 0.005\n"
            "max_backoff_s = 0.02\nmax_retry_time_s = 0.5\nbreaker_fail_max = 3\n"
            "breaker_reset_timeout_s = 0.2\n",
        )
        handler.reset_container()
        poller = LambdaPoller(faulty_invoke(rng, os_proxy, redis, schedule), rng, max_batch=15)
        original_drain = poller.drain

        def drain_then_heal(max_invocations: int = 100_000) -> None:
            for _ in range(200):
                if poller.caught_up:
                    break
                poller.step()
            os_proxy.mode = "pass"
            redis.set_down(False)
            poller.invoke = lambda records: handler.lambda_handler({"Records": records}, None)
            time.sleep(0.25)
            original_drain(max_invocations)

        poller.drain = drain_then_heal  # type: ignore[method-assign]
        reader = _history(catalog, rng, poller, prefix=f"rf{seed}-{uuid.uuid4().hex[:6]}")
        catalog.assert_converged()
        assert reader.stale_keys(catalog.items()) == []
        injected = sum(os_proxy.injected.values()) + redis.injected
    assert injected > 0 or poller.stats.partial_failures > 0
