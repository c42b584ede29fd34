"""What the pipeline and the commands are handed: every I/O edge, each carrying its guard.

The ports are Protocols; each concrete one (``SearchSink``, ``CacheSink``, ``ItemReader``,
``GuardedDeadLetters``) holds its client AND its ``Downstream`` guard and retries through it,
so no caller pairs a client with its guard by hand.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from syncer.config import OpenSearchConfig
from syncer.core.documents import DocumentRef, ReadState
from syncer.sinks.cache import CacheSink, RedisHandle
from syncer.sinks.deadletter import DeadLetter, DeadLetterSink, GuardedDeadLetters
from syncer.sinks.items import ItemReader, ScanPage
from syncer.sinks.resilience import Deadline, Downstream, Guarded
from syncer.sinks.search import ApplyResult, Body, Hit, Planner, SearchSink, WriteOptions

if TYPE_CHECKING:  # opensearchpy costs a cold start ~60 ms: imported where a client is made
    from opensearchpy import OpenSearch


class SearchStore(Protocol):
    """The search index: conditional writes, reads and searches, each retried by its guard."""

    def apply(
        self, refs: Sequence[DocumentRef], plan: Planner, options: WriteOptions = ...
    ) -> ApplyResult: ...
    def refresh(self, alias: str) -> None: ...
    def alias_exists(self, alias: str) -> bool: ...
    def mget(self, docs: Sequence[Mapping[str, str]]) -> list[Hit]: ...
    def search(self, alias: str, body: Body) -> list[Hit]: ...
    def scroll(self, alias: str, body: Body, page_size: int) -> Iterator[list[Hit]]: ...
    def count(self, alias: str, query: Body) -> int: ...
    def indices_of(self, alias: str) -> list[str]: ...


class CacheStore(Protocol):
    """The cache: keys deleted (durably, with ``wait_replicas``) or an error."""

    def invalidate(self, keys: Collection[str], deadline: Deadline | None = None) -> int: ...
    def read(self, keys: Sequence[str]) -> list[bytes | None]: ...


class ItemStore(Protocol):
    """The table: its schema, consistent reads by key and scans, each with a read version."""

    def describe(self, table: str) -> dict[str, Any]: ...
    def key_schema(self, table: str) -> dict[str, str]: ...
    def read(
        self,
        table: str,
        keys: Sequence[Mapping[str, Mapping[str, Any]]],
        deadline: Deadline | None = None,
    ) -> dict[str, ReadState]: ...
    def scan(
        self,
        table: str,
        *,
        segment: int = 0,
        total_segments: int = 1,
        start_key: Mapping[str, Any] | None = None,
        page_size: int = ...,
        limit: int | None = None,
    ) -> Iterator[ScanPage]: ...


class DeadLetterStore(Protocol):
    """Where records that cannot succeed go, with their error: every letter durable, or raise."""

    def write(self, letters: Sequence[DeadLetter], deadline: Deadline | None = None) -> None: ...


@dataclass(slots=True)
class Sinks:
    """The I/O edges: the clients and their guards, and the guarded ports built from them."""

    opensearch: OpenSearch
    redis: RedisHandle
    dynamodb: Any  # a boto3 client (no types); None only in tests that never read items
    deadletters: DeadLetterSink
    opensearch_guard: Downstream
    redis_guard: Downstream
    dynamodb_guard: Downstream
    deadletter_guard: Downstream
    opensearch_limits: OpenSearchConfig = field(default_factory=OpenSearchConfig)

    @property
    def search(self) -> SearchStore:
        """The index, through the OpenSearch guard."""
        return SearchSink(self.opensearch, self.opensearch_guard, self.opensearch_limits)

    @property
    def search_admin(self) -> Guarded:
        """The OpenSearch client with every call through its guard: index and alias
        administration (reindex: new indices, aliases, write blocks, settings)."""
        return Guarded(self.opensearch, self.opensearch_guard)

    @property
    def cache(self) -> CacheStore:
        """The cache, through the Redis guard."""
        return CacheSink(self.redis, self.redis_guard)

    @property
    def items(self) -> ItemReader:
        """The table's items, read through the DynamoDB guard."""
        return ItemReader(self.dynamodb, self.dynamodb_guard)

    @property
    def letters(self) -> DeadLetterStore:
        """The dead letters, written through their guard."""
        return GuardedDeadLetters(self.deadletters, self.deadletter_guard)

    @property
    def guards(self) -> tuple[Downstream, ...]:
        """Every edge's guard: for retry and breaker counts and health."""
        return (self.opensearch_guard, self.redis_guard, self.dynamodb_guard, self.deadletter_guard)

    def close(self) -> None:
        """Close every client's connections (the commands do, when they finish)."""
        for client in (self.opensearch, self.redis, self.dynamodb, self.deadletters):
            close = getattr(client, "close", None)
            if callable(close):
                close()
