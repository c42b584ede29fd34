"""lambda_handler on Kinesis events of a table streamed to Kinesis Data Streams (issue 25).

On the real services: the emulator's table, its DynamoDB stream republished to the emulator's
Kinesis by tests/kinesis_bridge.py (shuffled and duplicated, as AWS may deliver), OpenSearch
and Redis. Each shard is delivered the way Lambda delivers Kinesis: batches from a checkpoint,
function errors retried whole, partial failures retried from the lowest reported
``kinesis.sequenceNumber``, and old windows replayed.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncer import handler
from syncer.core.documents import SYNCER_FIELD
from syncer.errors import BatchFailedError
from syncer.sinks.build import aws_client
from tests.integration.conftest import Stack
from tests.kinesis_bridge import (
    Delivery,
    Precision,
    TableToKinesisBridge,
    create_kinesis_stream,
    encode,
    lambda_kinesis_event,
    put_all,
    read_kinesis,
)

pytestmark = pytest.mark.integration
REGION = "us-east-1"


@dataclass
class KinesisStack:
    """A stack's table streamed to a Kinesis stream through the bridge."""

    stack: Stack
    kinesis: Any
    name: str
    arn: str
    suffix: str
    delivered: set[str] = field(default_factory=set)
    existing: set[int] = field(default_factory=set)  # items the workload left in the table

    def bridge(
        self,
        precision: Precision,
        delivery: Delivery | None = None,
        ttl: frozenset[str] = frozenset(),
    ) -> TableToKinesisBridge:
        return TableToKinesisBridge(
            self.stack.streams,
            self.kinesis,
            self.stack.stream_arn,
            self.stack.table,
            self.name,
            REGION,
            precision,
            delivery or Delivery(),
            ttl,
        )

    def shard_events(self) -> dict[str, list[dict[str, Any]]]:
        """Every record now in the Kinesis stream, as Lambda event records, per shard."""
        shards: dict[str, list[dict[str, Any]]] = {}
        for shard_id, page in read_kinesis(self.kinesis, self.name):
            shards.setdefault(shard_id, []).extend(
                lambda_kinesis_event(page, self.arn, shard_id)["Records"]
            )
        return shards

    def new_shard_events(self) -> dict[str, list[dict[str, Any]]]:
        """Records not delivered by an earlier call, per shard."""
        fresh: dict[str, list[dict[str, Any]]] = {}
        for shard_id, records in self.shard_events().items():
            new = [r for r in records if r["eventID"] not in self.delivered]
            self.delivered.update(r["eventID"] for r in new)
            if new:
                fresh[shard_id] = new
        return fresh

    def put(self, n: int, price: int, category: str = "c") -> None:
        self.stack.put(
            {
                "pk": {"S": self.pk(n)},
                "sk": {"S": "v1"},
                "price": {"N": str(price)},
                "category": {"S": f"{category}-{self.suffix}"},
            }
        )

    def pk(self, n: int) -> str:
        return f"k{n}-{self.suffix}"

    def document(self, n: int) -> dict[str, Any] | None:
        """The indexed document of item n, tombstones included (None: none)."""
        client = self.stack.sinks.opensearch
        found = client.get(index=self.stack.index, id=f"{self.pk(n)}|v1", ignore=[404])
        return found.get("_source") if found.get("found") else None


def kinesis_stack(stack: Stack, prefix: str) -> Iterator[KinesisStack]:
    """A two-shard Kinesis stream of its own for the stack's table, deleted afterwards (the
    body of each test file's fixture)."""
    kinesis = aws_client("kinesis")
    suffix = uuid.uuid4().hex[:8]
    name = f"{prefix}-{suffix}"
    arn = create_kinesis_stream(kinesis, name, shard_count=2)
    yield KinesisStack(stack, kinesis, name, arn, suffix)
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture
def kstack(stack: Stack) -> Iterator[KinesisStack]:
    yield from kinesis_stack(stack, "syncer-it")


def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The Lambda handler on one Kinesis batch; a wholly failed batch is retried whole."""
    try:
        return handler.lambda_handler({"Records": copy.deepcopy(records)}, None)
    except BatchFailedError:
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in records
            ]
        }


def deliver_like_lambda(
    records: list[dict[str, Any]], rng: random.Random, error_share: float = 0.2
) -> int:
    """One shard's records through lambda_handler as Lambda delivers Kinesis; invocations.

    Random batch sizes from a checkpoint; a function error (before or after the work) retries
    the batch; a partial response moves the checkpoint to the lowest reported record; and now
    and then an acknowledged window is delivered again.
    """
    checkpoint = invocations = 0
    while checkpoint < len(records):
        invocations += 1
        assert invocations < 10_000, "delivery did not finish"
        batch = records[checkpoint : checkpoint + rng.randint(1, 25)]
        roll = rng.random()
        if roll < error_share / 2:
            continue  # the function failed before doing anything
        response = invoke(batch)
        if roll < error_share:
            continue  # it failed after the work: the whole batch comes again
        numbers = [r["kinesis"]["sequenceNumber"] for r in batch]
        reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        assert all(number in numbers for number in reported), reported
        checkpoint += numbers.index(min(reported, key=int)) if reported else len(batch)
        if checkpoint and rng.random() < 0.2:  # a replay of an old window
            start = rng.randrange(0, checkpoint)
            invoke(records[start : min(checkpoint, start + rng.randint(1, 25))])
    return invocations


def random_workload(ks: KinesisStack, rng: random.Random, writes: int, keys: int) -> list[str]:
    """Puts (some in bursts on one key, so that several share a millisecond) and deletes.

    Returns the cache keys of the items touched (``product:{pk}``, ``category:{category}``).
    """
    touched: set[str] = set()
    for _ in range(writes):
        n = rng.randrange(keys)
        if rng.random() < 0.2:
            if n in ks.existing:  # deleting a missing item makes no change to invalidate
                touched.add(f"product:{ks.pk(n)}")
                ks.existing.discard(n)
            ks.stack.delete(ks.pk(n), "v1")
        else:
            touched.add(f"product:{ks.pk(n)}")
            ks.existing.add(n)
            for _ in range(rng.choice((1, 1, 3))):  # a hot key: writes within milliseconds
                category = rng.choice(("a", "b"))
                touched.add(f"category:{category}-{ks.suffix}")
                ks.put(n, rng.randrange(1000), category)
    return sorted(touched)


def set_stale_cache(ks: KinesisStack, names: list[str]) -> None:
    """Cache keys set to a stale value, as readers filled them before the changes arrived."""
    for name in names:
        ks.stack.sinks.redis.set(name, b"stale", ex=600)


@pytest.mark.parametrize("precision", ["MILLISECOND", "MICROSECOND"])
def test_a_disordered_duplicated_retried_workload_converges_to_the_table(
    kstack: KinesisStack, precision: Precision
) -> None:
    """Shuffled, duplicated, retried and replayed: the index equals the table, no stale cache."""
    rng = random.Random(f"kinesis-{precision}")
    other: Precision = "MICROSECOND" if precision == "MILLISECOND" else "MILLISECOND"
    keys = 12
    bridge = kstack.bridge(precision, Delivery(seed=11, shuffle=True, duplicate_share=0.3))
    for phase_precision in (precision, other):  # the table's precision changes mid-stream
        # given a random workload published out of order and with duplicates
        bridge.precision = phase_precision
        stale = random_workload(kstack, rng, writes=30, keys=keys)
        bridge.pump()
        set_stale_cache(kstack, stale)
        # when each shard is delivered the way Lambda delivers Kinesis
        for records in kstack.new_shard_events().values():
            deliver_like_lambda(records, rng)
        # then the index holds exactly the table, and no cache key kept its stale value
        assert kstack.stack.indexed() == kstack.stack.scanned()
        assert [name for name in stale if kstack.stack.sinks.redis.get(name) is not None] == []
    # and a replay of the whole stream, months later, changes nothing
    for records in kstack.shard_events().values():
        deliver_like_lambda(records, rng, error_share=0.0)
    assert kstack.stack.indexed() == kstack.stack.scanned()


def _republish(ks: KinesisStack, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put ``payloads`` on the Kinesis stream in this order; their Lambda records, in order."""
    before = {r["eventID"] for records in ks.shard_events().values() for r in records}
    put_all(ks.kinesis, ks.name, [(encode(p), "one-key") for p in payloads])
    after = [r for records in ks.shard_events().values() for r in records]
    fresh = [r for r in after if r["eventID"] not in before]
    fresh.sort(key=lambda r: int(r["kinesis"]["sequenceNumber"]))
    return fresh


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(record["kinesis"]["data"]))
    return decoded


def test_equal_timestamps_force_a_consistent_re_read(kstack: KinesisStack) -> None:
    """Two changes of one item in one millisecond: the item is read again and that is indexed."""
    # given two changes of an item published with the same millisecond, the older one last
    kstack.put(1, 10)
    kstack.put(1, 20)
    published = kstack.bridge("MILLISECOND").pump()
    payloads = [dict(p.payload) for p in published]
    same_ms = payloads[0]["dynamodb"]["ApproximateCreationDateTime"]
    for payload in payloads:
        payload["dynamodb"] = {**payload["dynamodb"], "ApproximateCreationDateTime": same_ms}
    records = _republish(kstack, list(reversed(payloads)))
    # when they are delivered in one batch
    response = invoke(records)
    # then the document holds the table's state, written from a consistent read
    assert response == {"batchItemFailures": []}
    document = kstack.document(1)
    assert document is not None
    assert document["price"] == 20
    assert "read_from" in document[SYNCER_FIELD]


def test_a_remove_delivered_before_its_insert_keeps_the_item_deleted(kstack: KinesisStack) -> None:
    """The REMOVE arrives first and leaves a tombstone; the INSERT it follows then loses."""
    # given an item inserted and then deleted, published REMOVE first
    kstack.put(2, 5)
    kstack.stack.delete(kstack.pk(2), "v1")
    payloads = [dict(p.payload) for p in kstack.bridge("MICROSECOND").pump()]
    assert [p["eventName"] for p in payloads] == ["INSERT", "REMOVE"]
    remove, insert = _republish(kstack, [payloads[1], payloads[0]])
    # when the REMOVE is delivered, then the INSERT in a later batch
    assert invoke([remove]) == {"batchItemFailures": []}
    assert invoke([insert]) == {"batchItemFailures": []}
    # then the item stays deleted: a tombstone, nothing searchable
    document = kstack.document(2)
    assert document is not None
    assert document[SYNCER_FIELD]["deleted"] is True
    assert kstack.pk(2) + "|v1" not in kstack.stack.indexed()


def test_a_ttl_delete_is_marked_on_its_tombstone(kstack: KinesisStack) -> None:
    """A REMOVE by DynamoDB's TTL (its userIdentity) leaves a tombstone marked ttl."""
    # given an item that TTL deletes
    kstack.put(3, 7)
    kstack.stack.delete(kstack.pk(3), "v1")
    stream = kstack.stack.stream_records()
    remove_id = next(r["eventID"] for r in stream if r["eventName"] == "REMOVE")
    kstack.bridge("MILLISECOND", ttl=frozenset({remove_id})).pump()
    # when its changes are delivered
    for records in kstack.new_shard_events().values():
        assert invoke(records) == {"batchItemFailures": []}
    # then its tombstone says it was a TTL delete
    document = kstack.document(3)
    assert document is not None
    assert document[SYNCER_FIELD]["deleted"] is True
    assert document[SYNCER_FIELD]["ttl"] is True


def test_poison_records_are_dead_lettered_alone(kstack: KinesisStack) -> None:
    """Bad records go to the dead letters with their reason; the good ones are indexed."""
    # given good changes, and poison records in the same batch
    kstack.put(4, 1)
    kstack.put(5, 2)
    good = [dict(p.payload) for p in kstack.bridge("MILLISECOND").pump()]
    bad_time = {**good[0], "dynamodb": {**good[0]["dynamodb"], "ApproximateCreationDateTime": 1}}
    other_table = {**good[0], "tableName": "not-configured"}
    records = _republish(kstack, [good[0], bad_time, other_table, good[1]])
    not_base64 = copy.deepcopy(records[0])
    not_base64["kinesis"]["data"] = "%%% not base64 %%%"
    not_base64["kinesis"]["sequenceNumber"] = str(int(records[-1]["kinesis"]["sequenceNumber"]) + 1)
    letters_path = Path(kstack.stack.config.deadletter.file or "")
    lines_before = letters_path.read_bytes().count(b"\n") if letters_path.exists() else 0
    # when the batch is delivered
    response = invoke([*records, not_base64])
    # then nothing is retried, the good items are indexed, and each bad one is dead-lettered
    assert response == {"batchItemFailures": []}
    indexed = kstack.stack.indexed()
    assert {f"{kstack.pk(4)}|v1", f"{kstack.pk(5)}|v1"} <= set(indexed)
    lines = letters_path.read_text().splitlines()[lines_before:]
    letters = [json.loads(line) for line in lines]
    assert sorted(letter["sequence_number"] for letter in letters) == sorted(
        [
            records[1]["kinesis"]["sequenceNumber"],
            records[2]["kinesis"]["sequenceNumber"],
            not_base64["kinesis"]["sequenceNumber"],
        ]
    )
    reasons = " / ".join(str(letter) for letter in letters)
    assert "neither epoch milliseconds nor microseconds" in reasons
    assert "'not-configured' is not configured" in reasons
    assert "not base64" in reasons


def test_a_source_switch_never_goes_back_in_time(kstack: KinesisStack) -> None:
    """DynamoDB Streams, then Kinesis (replaying older changes too), then Streams again."""
    rng = random.Random(3)
    keys = 6
    bridge = kstack.bridge("MILLISECOND", Delivery(seed=5, shuffle=True, duplicate_share=0.3))
    # given changes delivered from the table's DynamoDB stream
    random_workload(kstack, rng, writes=15, keys=keys)
    kstack.stack.deliver(batch_size=7)
    assert kstack.stack.indexed() == kstack.stack.scanned()
    # when the table moves to Kinesis: newer changes, and every older one published again
    random_workload(kstack, rng, writes=15, keys=keys)
    bridge.pump()  # from the start of the table's stream: the Streams-delivered ones too
    for records in kstack.new_shard_events().values():
        deliver_like_lambda(records, rng)
    # then the index still equals the table
    assert kstack.stack.indexed() == kstack.stack.scanned()
    # and when it moves back to DynamoDB Streams, with the Kinesis stream replayed after it
    random_workload(kstack, rng, writes=15, keys=keys)
    kstack.stack.deliver(batch_size=5)
    assert kstack.stack.indexed() == kstack.stack.scanned()
    for records in kstack.shard_events().values():
        deliver_like_lambda(records, rng, error_share=0.0)
    for record_batch in [kstack.stack.stream_records()]:
        handler.lambda_handler({"Records": record_batch[:100]}, None)  # an old Streams window
    assert kstack.stack.indexed() == kstack.stack.scanned()
