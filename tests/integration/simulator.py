"""A delivery simulator that behaves like Lambda's DynamoDB Streams poller, and history makers.

The poller keeps one shard's records and a checkpoint. Each invocation takes a batch of random
size from the checkpoint; on a partial batch response it checkpoints at the LOWEST reported
sequence number and retries from there; on an exception it retries the whole batch, halved when
bisection is on. Between batches it may also replay an older window, as a dead-letter redrive or
a restarted poller would. (Lambda services-ddb-batchfailurereporting, services-ddb-params.)
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Invoke = Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass
class DeliveryStats:
    invocations: int = 0
    partial_failures: int = 0
    exceptions: int = 0
    bisections: int = 0
    replays: int = 0
    records_delivered: int = 0


@dataclass
class LambdaPoller:
    invoke: Invoke
    rng: random.Random
    max_batch: int = 20
    bisect: bool = True
    records: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: int = 0
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    _next_size: int | None = None

    def extend(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)

    @property
    def caught_up(self) -> bool:
        return self.checkpoint >= len(self.records)

    def step(self) -> None:
        """Deliver one batch from the checkpoint and move the checkpoint as Lambda would."""
        size = self._next_size or self.rng.randint(1, self.max_batch)
        batch = self.records[self.checkpoint : self.checkpoint + size]
        if not batch:
            return
        self.stats.invocations += 1
        self.stats.records_delivered += len(batch)
        try:
            response = self.invoke(copy.deepcopy(batch))
        except Exception:  # noqa: BLE001 - Lambda retries the whole batch after any function error
            self.stats.exceptions += 1
            if self.bisect and len(batch) > 1:
                self.stats.bisections += 1
                self._next_size = len(batch) // 2
            return
        failures = response.get("batchItemFailures")
        assert isinstance(failures, list), f"malformed response {response!r}"
        if not failures:
            self.checkpoint += len(batch)
            self._next_size = None
            return
        numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
        reported = [f.get("itemIdentifier") for f in failures]
        # An unknown or empty identifier makes Lambda fail the whole batch; syncer must not do it.
        assert all(ident in numbers for ident in reported), f"bad itemIdentifier in {reported}"
        self.stats.partial_failures += 1
        lowest = min(reported, key=lambda ident: int(str(ident)))
        self.checkpoint += numbers.index(lowest)
        self._next_size = max(1, len(batch) // 2) if self.bisect else None

    def drain(self, max_invocations: int = 100_000) -> None:
        for _ in range(max_invocations):
            if self.caught_up:
                return
            self.step()
        raise AssertionError(f"delivery did not finish in {max_invocations} invocations")

    def replay_old_window(self) -> None:
        """Deliver an already acknowledged window again (redrive, restarted poller)."""
        if self.checkpoint == 0:
            return
        start = self.rng.randrange(0, self.checkpoint)
        end = self.rng.randint(start + 1, min(self.checkpoint, start + self.max_batch))
        self.stats.replays += 1
        self.stats.invocations += 1
        try:
            self.invoke(copy.deepcopy(self.records[start:end]))
        except Exception:  # noqa: BLE001 - a failed replay of applied records loses nothing
            self.stats.exceptions += 1


class ProductionShaper:
    """Make emulator records look like production ones (REFERENCE.md, moto differences).

    Sequence numbers become gapped, increasing integers of 21 to 40 digits that cross digit
    boundaries (where text order is wrong); timestamps are whole seconds; some removes carry the
    TTL service identity; eventVersion is "1.1".
    """

    def __init__(self, rng: random.Random, ttl_share: float = 0.3) -> None:
        self.rng = rng
        self.ttl_share = ttl_share
        self.current = 10**21 - rng.randint(1_000, 50_000)
        self.mapped: dict[str, str] = {}

    def _next_sequence(self) -> int:
        roll = self.rng.random()
        if roll < 0.02 and self.current < 10**38:
            self.current = self.current * self.rng.randint(10, 1000) + self.rng.randint(1, 99)
        else:
            self.current += self.rng.choice([1, 7, 313, 10**4, 10**7 + 3])
        return self.current

    def shape(self, record: dict[str, Any]) -> dict[str, Any]:
        shaped = json.loads(json.dumps(record))
        body = shaped["dynamodb"]
        original = body["SequenceNumber"]
        if original not in self.mapped:
            self.mapped[original] = str(self._next_sequence())
        body["SequenceNumber"] = self.mapped[original]
        body["ApproximateCreationDateTime"] = int(float(body["ApproximateCreationDateTime"]))
        shaped["eventVersion"] = "1.1"
        if shaped["eventName"] == "REMOVE" and self.rng.random() < self.ttl_share:
            shaped["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        return shaped


@dataclass
class HistoryMaker:
    """Random operations on a few keys of a table: puts, moves, updates, deletes, re-creates."""

    rng: random.Random
    prefix: str
    key_count: int = 8

    @property
    def categories(self) -> list[str]:
        return [f"{self.prefix}-{name}" for name in ("shoes", "hats", "bags", "sale")]

    def operation(self, dynamodb: Any, table: str) -> None:
        pk = f"{self.prefix}-k{self.rng.randrange(self.key_count)}"
        key = {"pk": {"S": pk}, "sk": {"S": "v1"}}
        roll = self.rng.random()
        if roll < 0.5:
            item = {
                **key,
                "category": {"S": self.rng.choice(self.categories)},
                "price": {"N": f"{self.rng.randint(1, 500)}.{self.rng.randint(0, 99):02d}"},
                "stock": {"N": str(self.rng.randint(0, 10 ** self.rng.randint(1, 30)))},
                "tags": {"SS": sorted({self.rng.choice("abcdef") for _ in range(3)})},
                "cost": {"N": "1"},
            }
            if self.rng.random() < 0.3:
                item["details"] = {"M": {"color": {"S": self.rng.choice(["red", "blue", "緑"])}}}
            dynamodb.put_item(TableName=table, Item=item)
        elif roll < 0.75:
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET category = :c, price = :p",
                ExpressionAttributeValues={
                    ":c": {"S": self.rng.choice(self.categories)},
                    ":p": {"N": str(self.rng.randint(1, 99))},
                },
            )
        else:
            dynamodb.delete_item(TableName=table, Key=key)


@dataclass
class CacheReader:
    """An application that fills the cache from the table, as readers do between changes.

    ``product:{pk}`` holds the item, ``category:{c}`` the sorted keys in the category. After
    delivery every key still present must equal what the final table gives: a stale value
    means an invalidation was missed.
    """

    redis: Any
    prefix: str
    categories: list[str]

    def _expected(self, items: dict[str, dict[str, Any]]) -> dict[str, str]:
        expected: dict[str, str] = {}
        for item in items.values():
            value = json.dumps(item, sort_keys=True)
            expected[f"product:{item['pk']}"] = value
            expected[f"product:{item['pk']}:{item['sk']}"] = value
        for category in self.categories:
            members = sorted(i["pk"] for i in items.values() if i.get("category") == category)
            expected[f"category:{category}"] = json.dumps(members)
        return expected

    def fill(self, items: dict[str, dict[str, Any]]) -> None:
        self.redis.mset(self._expected(items))

    def stale_keys(self, final_items: dict[str, dict[str, Any]]) -> list[str]:
        expected = self._expected(final_items)
        stale = []
        for pattern in (f"product:{self.prefix}-*", f"category:{self.prefix}-*"):
            for key in self.redis.scan_iter(match=pattern):
                name = key.decode()
                if self.redis.get(key).decode() != expected.get(name):
                    stale.append(name)
        return sorted(stale)
