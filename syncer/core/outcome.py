"""What a batch did, and the pure decision per key: acknowledge, retry or dead-letter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from syncer.core.consistency import WrittenKey
from syncer.core.documents import Settled


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch did; ``failed_sequence_numbers`` are what Lambda must retry from."""

    records_in: int
    keys: int
    indexed: int
    deleted: int
    skipped_stale: int
    invalidated: int
    dead_lettered: int
    failed_sequence_numbers: tuple[str, ...]
    cache_keys: tuple[str, ...] = ()
    unrouted: int = 0  # items of routed tables that no route selects: skipped, acknowledged
    retries: int = 0
    breaker_changes: int = 0
    iterator_age_ms_max: float = 0.0
    iterator_age_ms_median: float = 0.0
    bulk_latency_ms: float = 0.0
    # From each acknowledged record's ApproximateCreationDateTime to its acknowledgement.
    freshness_ms_p50: float = 0.0
    freshness_ms_p99: float = 0.0
    # Documents updated without an _mget (their known state), and those read after all.
    known_states_used: int = 0
    known_states_stale: int = 0
    # What the consistency sampler picks from; each key built when read (``core.work.WrittenKeys``).
    written: Sequence[WrittenKey] = ()

    @property
    def all_failed(self) -> bool:
        """Every record of a non-empty batch must be retried: nothing at all got through."""
        return self.records_in > 0 and len(self.failed_sequence_numbers) >= self.records_in

    def lambda_response(self) -> dict[str, list[dict[str, str]]]:
        """The partial batch response Lambda documents; empty only when all is durable."""
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failed_sequence_numbers]}

    def counts(self) -> dict[str, int | float]:
        """The batch's figures for logs and metrics: counts only, never item contents."""
        return {
            "records_in": self.records_in,
            "keys": self.keys,
            "indexed": self.indexed,
            "deleted": self.deleted,
            "skipped_stale": self.skipped_stale,
            "invalidated": self.invalidated,
            "dead_lettered": self.dead_lettered,
            "unrouted": self.unrouted,
            "failed": len(self.failed_sequence_numbers),
            "retries": self.retries,
            "breaker_changes": self.breaker_changes,
            "iterator_age_ms_max": round(self.iterator_age_ms_max, 1),
            "iterator_age_ms_median": round(self.iterator_age_ms_median, 1),
            "bulk_latency_ms": round(self.bulk_latency_ms, 1),
            "freshness_ms_p50": round(self.freshness_ms_p50, 1),
            "freshness_ms_p99": round(self.freshness_ms_p99, 1),
            "known_states_used": self.known_states_used,
            "known_states_stale": self.known_states_stale,
        }


class RecordAction(Enum):
    ACKNOWLEDGE = "acknowledge"
    RETRY = "retry"  # reported in batchItemFailures
    DEADLETTER = "deadletter"


@dataclass(frozen=True, slots=True)
class KeyStages:
    """What each stage did for one key's change: the input of ``decide``."""

    lookup_failed: bool
    search: Settled | None  # the worst outcome over the key's targets; None: not attempted
    cache_failed: bool


def decide(stages: KeyStages, cache_policy: str) -> RecordAction:
    """Acknowledge, retry or dead-letter the records of one key (tested as a table).

    A record is acknowledged only when its document and its cache keys are done, or when it
    is dead-lettered; a rejected document still needs its invalidation first, so a failed
    invalidation under the "retry" policy retries it too.
    """
    if stages.lookup_failed or stages.search is Settled.FAILED or stages.search is None:
        return RecordAction.RETRY
    if stages.cache_failed and cache_policy == "retry":
        return RecordAction.RETRY
    if stages.search is Settled.REJECTED or stages.cache_failed:
        return RecordAction.DEADLETTER
    return RecordAction.ACKNOWLEDGE


_SEVERITY = {Settled.FAILED: 3, Settled.REJECTED: 2}


def worst(statuses: Sequence[Settled | None]) -> Settled | None:
    found: Settled | None = None
    severity = -1
    for status in statuses:  # one pass: asked of every key of every batch
        if status is None:
            return None
        rank = _SEVERITY.get(status, 0)
        if rank > severity:  # the first of the most severe, as max() would pick
            found, severity = status, rank
    return found
