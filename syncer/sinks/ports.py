"""What the pipeline and the commands are handed: every I/O edge, each with its guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncer.sinks.deadletter import DeadLetterSink
from syncer.sinks.items import ItemReader
from syncer.sinks.resilience import Downstream


@dataclass(slots=True)
class Sinks:
    """The I/O edges of the pipeline: clients and the downstream guard of each."""

    opensearch: Any
    redis: Any
    dynamodb: Any  # None only in tests that never read items
    deadletters: DeadLetterSink
    opensearch_guard: Downstream
    redis_guard: Downstream
    dynamodb_guard: Downstream
    deadletter_guard: Downstream

    @property
    def items(self) -> ItemReader:
        """The table's items, read through the DynamoDB guard."""
        return ItemReader(self.dynamodb, self.dynamodb_guard)

    def close(self) -> None:
        """Close every client's connections (the commands do, when they finish)."""
        for client in (self.opensearch, self.redis, self.dynamodb, self.deadletters):
            close = getattr(client, "close", None)
            if callable(close):
                close()
