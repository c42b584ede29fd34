"""Random histories delivered the way Lambda can deliver them always converge.

Each history writes random operations to a real table in the emulator, reshapes its stream
records to look like production ones, and delivers them through lambda_handler with random
batch sizes, function errors (before or after the work), bisection and replays of old windows,
while a reader keeps filling the cache. Afterwards the index equals a table scan and no cache
key holds a stale value. SYNCER_SIM_HISTORIES sets how many histories run (default 12).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest

from syncer import handler
from tests.integration.conftest import Stack
from tests.integration.simulator import CacheReader, HistoryMaker, LambdaPoller, ProductionShaper

pytestmark = pytest.mark.integration

HISTORIES = int(os.environ.get("SYNCER_SIM_HISTORIES", "12"))


class StreamTail:
    """New emulator records of a stack's stream, shaped like production records."""

    def __init__(self, stack: Stack, shaper: ProductionShaper) -> None:
        self.stack = stack
        self.shaper = shaper
        self.seen: set[str] = set()

    def new_records(self) -> list[dict[str, Any]]:
        fresh = [
            r
            for r in self.stack.stream_records()
            if r["dynamodb"]["SequenceNumber"] not in self.seen
        ]
        self.seen.update(r["dynamodb"]["SequenceNumber"] for r in fresh)
        return [self.shaper.shape(r) for r in fresh]


def flaky_invoke(rng: random.Random, error_share: float) -> Any:
    """lambda_handler that sometimes fails as a function: before its work, or after it."""

    def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
        roll = rng.random()
        if roll < error_share / 2:
            raise TimeoutError("injected: function failed before doing anything")
        response = handler.lambda_handler({"Records": records}, None)
        if roll < error_share:
            raise TimeoutError("injected: function timed out after the work was done")
        return response

    return invoke


def drive_history(
    stack: Stack,
    rng: random.Random,
    poller: LambdaPoller,
    maker: Any,
    reader: Any,
    current: Callable[[], Any],
) -> None:
    """Interleave ``maker``'s operations, cache fills from ``current()``, partial deliveries and
    replays of old windows; then drain and replay the last windows again."""
    tail = StreamTail(stack, ProductionShaper(rng))
    for _ in range(rng.randint(4, 8)):
        for _ in range(rng.randint(3, 15)):
            maker.operation(stack.dynamodb, stack.table)
        if rng.random() < 0.6:
            reader.fill(current())
        poller.extend(tail.new_records())
        for _ in range(rng.randint(0, 6)):
            poller.step()
            if rng.random() < 0.2:
                poller.replay_old_window()
    poller.drain()
    for _ in range(3):
        poller.replay_old_window()


def run_history(stack: Stack, rng: random.Random, poller: LambdaPoller, prefix: str) -> CacheReader:
    """A random history of the plain catalog (``drive_history``); the reader of its cache."""
    maker = HistoryMaker(rng, prefix)
    reader = CacheReader(stack.sinks.redis, prefix, maker.categories)
    drive_history(stack, rng, poller, maker, reader, stack.scanned)
    return reader


@pytest.mark.parametrize("seed", range(HISTORIES))
def test_any_delivery_schedule_ends_with_index_equal_to_table(stack: Stack, seed: int) -> None:
    """Whatever the batching, retries, bisection and replays, index and cache converge."""
    rng = random.Random(seed)
    poller = LambdaPoller(
        flaky_invoke(rng, error_share=0.2), rng, max_batch=rng.choice([3, 10, 40])
    )
    reader = run_history(stack, rng, poller, prefix=f"h{seed}")
    final = stack.scanned()
    assert stack.indexed() == final
    assert reader.stale_keys(final) == []
    assert poller.stats.invocations > 0
