"""Faults during delivery: OpenSearch and Redis go down and come back, answer 429 and 503, or
lose bulk responses after applying them. Breakers open and close. Nothing is lost.

Histories run through fault proxies on loopback (tests/integration/faults.py); the poller keeps
retrying as Lambda does. SYNCER_FAULT_HISTORIES sets how many run (default 6).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pybreaker
import pytest

from syncer import handler
from tests.integration.conftest import OPENSEARCH_URL, REDIS_URL, Stack, write_config
from tests.integration.faults import (
    OpenSearchFaultProxy,
    TcpFaultProxy,
    opensearch_proxy,
    redis_proxy,
)
from tests.integration.simulator import LambdaPoller
from tests.integration.test_delivery_simulation import run_history

pytestmark = pytest.mark.integration

FAULT_HISTORIES = int(os.environ.get("SYNCER_FAULT_HISTORIES", "6"))
FAST_RESILIENCE = (
    "[resilience]\nmax_attempts = 3\ninitial_backoff_s = 0.005\nmax_backoff_s = 0.02\n"
    "max_retry_time_s = 0.5\nbreaker_fail_max = 3\nbreaker_reset_timeout_s = 0.2\n"
)
FAULTS = ["refuse", "http_429", "http_503", "bulk_items_429", "redis_down"]


class BreakerWatch(pybreaker.CircuitBreakerListener):
    """Counts breaker state changes in the handler's container."""

    def __init__(self) -> None:
        self.changes: Counter[str] = Counter()

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.changes[f"{cb.name}:{new_state.name}"] += 1


def _through_proxies(stack: Stack, os_url: str, redis_port: int, **extra: str) -> None:
    write_config(
        stack.config_path,
        stack.table,
        stack.index,
        opensearch=f'[opensearch]\nurl = "{os_url}"\ntimeout_s = 5\n',
        redis=f'[redis]\nurl = "redis://127.0.0.1:{redis_port}/0"\ntimeout_s = 1\n'
        + extra.get("redis_extra", ""),
        resilience=FAST_RESILIENCE,
    )
    handler.reset_container()


def _watch_breakers() -> BreakerWatch:
    watch = BreakerWatch()
    sinks = handler._get_container().sinks
    for guard in (sinks.opensearch_guard, sinks.redis_guard):
        guard.breaker.add_listener(watch)
    return watch


def faulty_invoke(
    rng: random.Random, os_proxy: OpenSearchFaultProxy, redis: TcpFaultProxy, schedule: Counter[str]
) -> Any:
    """lambda_handler with the proxies switched to a new fault (or none) every few calls."""
    state = {"left": 0}

    def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
        if state["left"] == 0:
            fault = rng.choice([*FAULTS, "none", "none"])
            schedule[fault] += 1
            os_proxy.mode = (
                fault if fault in ("refuse", "http_429", "http_503", "bulk_items_429") else "pass"
            )
            redis.set_down(fault == "redis_down")
            state["left"] = rng.randint(1, 6)
        state["left"] -= 1
        response = handler.lambda_handler({"Records": records}, None)
        if response["batchItemFailures"]:
            time.sleep(0.05)  # Lambda, too, does not retry a failed batch in a tight loop
        return response

    return invoke


@pytest.mark.parametrize("seed", range(FAULT_HISTORIES))
def test_faults_during_delivery_lose_nothing(stack: Stack, seed: int) -> None:
    """With faults switching on and off during delivery, index and cache still converge."""
    rng = random.Random(1000 + seed)
    schedule: Counter[str] = Counter()
    with opensearch_proxy(OPENSEARCH_URL, seed) as os_proxy, redis_proxy(REDIS_URL) as redis:
        _through_proxies(stack, os_proxy.url, redis.port)
        watch = _watch_breakers()
        poller = LambdaPoller(faulty_invoke(rng, os_proxy, redis, schedule), rng, max_batch=15)
        original_drain = poller.drain

        def drain_then_heal(max_invocations: int = 100_000) -> None:
            for _ in range(200):  # deliver under faults for a while ...
                if poller.caught_up:
                    break
                poller.step()
            os_proxy.mode = "pass"  # ... then let everything recover and finish
            redis.set_down(False)
            poller.invoke = lambda records: handler.lambda_handler({"Records": records}, None)
            time.sleep(0.25)  # past the breaker's reset timeout
            original_drain(max_invocations)

        poller.drain = drain_then_heal  # type: ignore[method-assign]
        reader = run_history(stack, rng, poller, prefix=f"f{seed}")
        final = stack.scanned()
        assert stack.indexed() == final
        assert reader.stale_keys(final) == []
        injected = sum(os_proxy.injected.values()) + redis.injected
    print(
        f"seed {seed}: schedule {dict(schedule)}, injected {dict(os_proxy.injected)} + redis {redis.injected}, "
        f"breakers {dict(watch.changes)}, stats {poller.stats}"
    )
    assert injected > 0 or poller.stats.partial_failures > 0


def test_breaker_opens_while_opensearch_is_down_and_closes_after(stack: Stack) -> None:
    """Repeated failures open the OpenSearch breaker (fail fast); once back, it closes again."""
    stack.put({"pk": {"S": "b1"}, "sk": {"S": "v1"}, "category": {"S": "shoes"}})
    records = stack.new_records()
    with opensearch_proxy(OPENSEARCH_URL) as os_proxy, redis_proxy(REDIS_URL) as redis:
        _through_proxies(stack, os_proxy.url, redis.port)
        watch = _watch_breakers()
        os_proxy.mode = "refuse"
        for _ in range(3):
            assert stack.invoke(records)["batchItemFailures"]
        assert watch.changes["opensearch:open"] >= 1
        calls_before = os_proxy.injected["refuse"]
        assert stack.invoke(records)["batchItemFailures"]  # open: fails fast, no request sent
        assert os_proxy.injected["refuse"] == calls_before
        os_proxy.mode = "pass"
        time.sleep(0.25)
        assert stack.invoke(records) == {"batchItemFailures": []}
        assert watch.changes["opensearch:closed"] >= 1
    assert stack.indexed() == stack.scanned()


def test_redis_down_with_deadletter_policy_keeps_indexing(stack: Stack) -> None:
    """With on_failure = "deadletter", indexing goes on and the invalidations are dead-lettered."""
    stack.put({"pk": {"S": "r1"}, "sk": {"S": "v1"}, "category": {"S": "hats"}})
    records = stack.new_records()
    with redis_proxy(REDIS_URL) as redis:
        _through_proxies(
            stack, OPENSEARCH_URL, redis.port, redis_extra='on_failure = "deadletter"\n'
        )
        redis.set_down(True)
        assert stack.invoke(records) == {"batchItemFailures": []}
    assert stack.indexed() == stack.scanned()
    letters = [
        json.loads(line)
        for line in Path(stack.config.deadletter.file or "").read_text().splitlines()
    ]
    assert letters[-1]["error"]["class"] == "CacheInvalidationError"
    assert "product:r1" in letters[-1]["error"]["message"]
