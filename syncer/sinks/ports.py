"""What the pipeline and the commands are handed: every I/O edge, each carrying its guard.

The ports are Protocols; each concrete one (``SearchSink``, ``CacheSink``, ``ItemReader``,
``GuardedDeadLetters``) holds its client AND its ``Downstream`` guard and retries through it,
so no caller pairs a client with its guard by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syncer.config import OpenSearchConfig
from syncer.core.documents import ReadState
from syncer.core.jobs import Job
from syncer.core.known import KnownStates
from syncer.core.writes import WriteRounds
from syncer.sinks.cache import CacheSink, RedisHandle
from syncer.sinks.deadletter import DeadLetter, DeadLetterSink, GuardedDeadLetters
from syncer.sinks.items import ItemReader, ScanPage
from syncer.sinks.jobs import JobStore, Stored
from syncer.sinks.resilience import Deadline, Downstream, Guarded
from syncer.sinks.search import Body, Hit, SearchSink
from syncer.sinks.search.admin import OpenSearchAdmin

if TYPE_CHECKING:  # opensearchpy costs a cold start ~60 ms: imported where a client is made
    from opensearchpy import OpenSearch


class SearchStore(WriteRounds, Protocol):
    """The search index: write rounds' reads and sends (``WriteRounds``, which
    ``syncer.core.rounds.write_documents`` runs), reads and searches, each through its guard."""

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
        ids: Sequence[str] | None = None,
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


class SearchAdmin(Protocol):
    """The few index and alias calls the commands make, typed, each retried by its guard.

    ``OpenSearchAdmin`` (``syncer.sinks.search.admin``) on OpenSearch; the tests' ``FakeAdmin``
    in memory, checked against it by one contract suite."""

    def indices_of(self, alias: str) -> list[str]: ...
    def aliases_of(self, index: str) -> list[str]: ...
    def indices_matching(self, pattern: str) -> list[str]: ...
    def index_exists(self, index: str) -> bool: ...
    def create_index(self, index: str, body: Mapping[str, Any] | None = None) -> bool: ...
    def put_alias(self, index: str, alias: str) -> None: ...
    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None: ...
    def delete_index(self, index: str) -> None: ...
    def index_settings(self, index: str, name: str | None = None) -> dict[str, Any]: ...
    def put_index_settings(self, index: str, body: Mapping[str, Any]) -> None: ...
    def write_blocked(self, index: str) -> bool: ...
    def set_write_block(self, index: str, blocked: bool) -> None: ...
    def primary_shards(self, index: str) -> int: ...
    def documents(
        self, index: str, ids: Sequence[str], *, source: bool = True
    ) -> dict[str, Hit]: ...


class JobRecords(Protocol):
    """The rebuild jobs' records: one per table, every write conditional (``JobStore``)."""

    def get(self, table: str) -> Stored | None: ...
    def put(self, job: Job, expected: Stored | None) -> Stored: ...
    def update(self, table: str, change: Callable[[Stored | None], Job]) -> Stored: ...
    def all(self) -> list[Job]: ...


@dataclass(frozen=True, slots=True)
class Clients:
    """The raw clients inside the adapters: closed by ``Sinks.close``; tests inspect them."""

    opensearch: OpenSearch
    redis: RedisHandle
    dynamodb: Any  # a boto3 client (no types); None only in tests that never read items
    deadletters: DeadLetterSink
    opensearch_limits: OpenSearchConfig


class Sinks:
    """The I/O edges as guarded ports, each built once: what the pipeline and commands get.

    ``search``, ``cache``, ``items`` and ``letters`` are the ports (Protocols above; the tests'
    in-memory fakes implement them too), ``admin`` the typed index and alias calls, ``jobs``
    the rebuild jobs' records (``syncer.sinks.jobs``), ``guards``
    every edge's ``Downstream`` (retry and breaker counts, health). The raw clients stay inside
    the adapters (``clients``); ``opensearch``, ``redis``, ``dynamodb`` and ``deadletters``
    still reach them for the callers that have not moved to the ports (``syncer setup``, the
    demo, the local runner's checkpoints); ``search_admin`` is deprecated.
    """

    __slots__ = (
        "admin",
        "cache",
        "clients",
        "guards",
        "items",
        "jobs",
        "known",
        "letters",
        "search",
    )

    def __init__(
        self,
        *,
        search: SearchStore,
        cache: CacheStore,
        items: ItemStore,
        letters: DeadLetterStore,
        guards: tuple[Downstream, Downstream, Downstream, Downstream],
        admin: SearchAdmin,
        jobs: JobRecords,
        clients: Clients | None = None,
        known: KnownStates | None = None,
    ) -> None:
        self.search = search
        self.cache = cache
        self.items = items
        self.letters = letters
        self.guards = guards  # OpenSearch, Redis, DynamoDB, dead letters
        self.admin = admin
        self.jobs = jobs
        self.clients = clients
        # The states this process last read or wrote per document: the stream path plans
        # against them instead of reading first, and OpenSearch checks every such write.
        self.known = KnownStates() if known is None else known

    @classmethod
    def of_clients(
        cls,
        *,
        opensearch: OpenSearch,
        redis: RedisHandle,
        dynamodb: Any,
        deadletters: DeadLetterSink,
        opensearch_guard: Downstream,
        redis_guard: Downstream,
        dynamodb_guard: Downstream,
        deadletter_guard: Downstream,
        opensearch_limits: OpenSearchConfig | None = None,
    ) -> Sinks:
        """The real adapters around the clients, each with its guard, built once."""
        limits = opensearch_limits or OpenSearchConfig()
        return cls(
            search=SearchSink(opensearch, opensearch_guard, limits),
            cache=CacheSink(redis, redis_guard),
            items=ItemReader(dynamodb, dynamodb_guard),
            letters=GuardedDeadLetters(deadletters, deadletter_guard),
            guards=(opensearch_guard, redis_guard, dynamodb_guard, deadletter_guard),
            admin=OpenSearchAdmin(opensearch, opensearch_guard),
            jobs=JobStore(opensearch, opensearch_guard),
            clients=Clients(opensearch, redis, dynamodb, deadletters, limits),
            known=KnownStates(limits.known_states),
        )

    def replace(self, **changes: Any) -> Sinks:
        """New adapters around these clients and guards with some of them replaced (by the
        names ``of_clients`` takes): a test's proxy in front of OpenSearch, another guard."""
        clients = self._clients()
        current: dict[str, Any] = {
            "opensearch": clients.opensearch,
            "redis": clients.redis,
            "dynamodb": clients.dynamodb,
            "deadletters": clients.deadletters,
            "opensearch_guard": self.guards[0],
            "redis_guard": self.guards[1],
            "dynamodb_guard": self.guards[2],
            "deadletter_guard": self.guards[3],
            "opensearch_limits": clients.opensearch_limits,
        }
        unknown = set(changes) - set(current)
        if unknown:
            raise TypeError(f"Sinks.replace() got unknown names: {sorted(unknown)}")
        return Sinks.of_clients(**{**current, **changes})

    def with_letters(self, letters: DeadLetterStore) -> Sinks:
        """The same ports, dead letters written to ``letters`` instead (redrive watches them)."""
        return Sinks(
            search=self.search,
            cache=self.cache,
            items=self.items,
            letters=letters,
            guards=self.guards,
            admin=self.admin,
            jobs=self.jobs,
            clients=self.clients,
        )

    def _adopt(self, other: Sinks) -> None:
        for name in Sinks.__slots__:
            setattr(self, name, getattr(other, name))

    def _clients(self) -> Clients:
        if self.clients is None:
            raise AttributeError("these sinks are in-memory fakes: they have no raw clients")
        return self.clients

    @property
    def opensearch(self) -> OpenSearch:
        return self._clients().opensearch

    @property
    def redis(self) -> RedisHandle:
        return self._clients().redis

    @redis.setter
    def redis(self, client: RedisHandle) -> None:
        """Point the cache port at another Redis (a test's cluster), keeping its guard."""
        self._adopt(self.replace(redis=client))

    @property
    def dynamodb(self) -> Any:
        return self._clients().dynamodb

    @property
    def deadletters(self) -> DeadLetterSink:
        return self._clients().deadletters

    @property
    def opensearch_guard(self) -> Downstream:
        return self.guards[0]

    @property
    def redis_guard(self) -> Downstream:
        return self.guards[1]

    @property
    def dynamodb_guard(self) -> Downstream:
        return self.guards[2]

    @property
    def deadletter_guard(self) -> Downstream:
        return self.guards[3]

    @property
    def search_admin(self) -> Guarded:
        """Deprecated (removed in 0.3.0): the raw OpenSearch client behind its guard. Use
        ``admin``, the typed port of the index and alias calls."""
        warnings.warn(
            "Sinks.search_admin is deprecated and will be removed in 0.3.0: use Sinks.admin "
            "(syncer.sinks.ports.SearchAdmin), the typed index and alias calls",
            DeprecationWarning,
            stacklevel=2,
        )
        return Guarded(self.opensearch, self.opensearch_guard)

    def close(self) -> None:
        """Close every client's connections (the commands do, when they finish)."""
        if self.clients is None:
            return
        clients = self.clients
        for client in (clients.opensearch, clients.redis, clients.dynamodb, clients.deadletters):
            close = getattr(client, "close", None)
            if callable(close):
                close()
