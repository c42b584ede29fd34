"""The search store the pipeline and the commands are handed: OpenSearch behind its guard."""

from __future__ import annotations

import time
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from syncer.config import OpenSearchConfig
from syncer.core.deadline import Deadline
from syncer.core.documents import DocumentRef, DocumentWrite, TargetState
from syncer.core.rounds import write_documents
from syncer.core.writes import ApplyResult, Planner, SentChunk, WriteOptions
from syncer.sinks.resilience import reported_failure
from syncer.sinks.search.aliases import alias_exists, current_indices
from syncer.sinks.search.bulk import bulk_chunks, send_bulk
from syncer.sinks.search.reads import Body, Hit, check_shards, scroll_pages
from syncer.sinks.search.targets import read_round

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from syncer.sinks.resilience import Downstream


def apply_writes(
    client: OpenSearch,
    guard: Downstream,
    refs: Sequence[DocumentRef],
    plan: Planner,
    limits: OpenSearchConfig,
    **options: Any,
) -> ApplyResult:
    """``write_documents`` on ``client`` with ``WriteOptions``' fields as keywords (kept for
    its callers)."""
    if "fields" in options:
        options["fields"] = tuple(options["fields"])
    return write_documents(SearchSink(client, guard, limits), refs, plan, WriteOptions(**options))


class SearchSink:
    """OpenSearch with its retry and breaker: every request here goes through the guard.

    It only sends requests and reads their results; the write rounds (read, plan, send, again
    for conflicts) are ``syncer.core.rounds.write_documents``, which the pipeline runs over it.
    """

    __slots__ = ("client", "guard", "limits")

    def __init__(self, client: OpenSearch, guard: Downstream, limits: OpenSearchConfig) -> None:
        self.client = client
        self.guard = guard
        self.limits = limits

    # What write_documents needs of the store (WriteRounds): attempts, one read, one send.
    def attempts(self, deadline: Deadline | None) -> Iterable[AbstractContextManager[Any]]:
        """The rounds the guard's retry policy allows within ``deadline``."""
        return self.guard.retrying(deadline)

    def read_round(
        self,
        refs: Sequence[DocumentRef],
        fields: Sequence[str],
        optional_aliases: frozenset[str],
        deadline: Deadline | None,
        *,
        read: bool,
        absent: Container[DocumentRef] = frozenset(),
        exists: Mapping[str, bool] | None = None,
    ) -> dict[DocumentRef, TargetState]:
        """The refs' target states: the ``_mget``, the reindex aliases' ``HEAD`` (one attempt)."""
        return self.guard.call(
            read_round,
            self.client,
            refs,
            fields,
            optional_aliases,
            self._cap(deadline),
            read=read,
            absent=absent,
            exists=exists,
        )

    def send_round(
        self,
        writes: Sequence[DocumentWrite],
        refresh: str | None,
        deadline: Deadline | None,
        aliases: frozenset[str] = frozenset(),
    ) -> Iterator[SentChunk]:
        """The writes as ``_bulk`` requests cut by count and bytes, each item's result read;
        a ``create`` into one of ``aliases`` requires that alias (``bulk_chunks``)."""
        unencodable: list[tuple[DocumentWrite, str]] = []
        limits = self.limits
        for chunk, body in bulk_chunks(
            writes, limits.bulk_max_actions, limits.bulk_max_bytes, unencodable, aliases
        ):
            started = time.perf_counter()
            results = self.guard.call(
                send_bulk, self.client, body, chunk, refresh, self._cap(deadline)
            )
            yield SentChunk(chunk, results, time.perf_counter() - started)
        if unencodable:
            yield SentChunk((), {}, 0.0, unencodable)

    def failure(self, error: Exception) -> str:
        """Why the write rounds stopped on ``error``, logged; an unknown error re-raised."""
        return reported_failure(error, "OpenSearch write")

    def current_indices(
        self, aliases: Collection[str], deadline: Deadline | None
    ) -> Mapping[str, str | None]:
        """The one concrete index each alias resolves to now (one ``GET _alias``, one attempt)."""
        return self.guard.call(current_indices, self.client, aliases, self._cap(deadline))

    def _cap(self, deadline: Deadline | None) -> float | None:
        return None if deadline is None else deadline.request_timeout(self.limits.timeout_s)

    def refresh(self, alias: str) -> None:
        """Make every write to ``alias`` so far visible to search."""
        self.guard.call_with_retry(self.client.indices.refresh, index=alias)

    def alias_exists(self, alias: str) -> bool:
        """Whether ``alias`` exists."""
        return bool(self.guard.call_with_retry(alias_exists, self.client, alias))

    def mget(self, docs: Sequence[Mapping[str, str]]) -> list[Hit]:
        """``_mget`` of (``_index``, ``_id``) pairs in real time, a result per pair."""
        response = self.guard.call_with_retry(
            self.client.mget, body={"docs": list(docs)}, params={"realtime": "true"}
        )
        found: list[Hit] = response["docs"]
        return found

    def search(self, alias: str, body: Body) -> list[Hit]:
        """The hits of one search; a failed shard is an error, never fewer hits."""
        response = self.guard.call_with_retry(self.client.search, index=alias, body=body)
        check_shards(response, f"search of {alias}")
        hits: list[Hit] = response["hits"]["hits"]
        return hits

    def scroll(self, alias: str, body: Body, page_size: int) -> Iterator[list[Hit]]:
        """Every hit of ``body``'s query, a page at a time (``scroll_pages``)."""
        return scroll_pages(self.client, self.guard, alias, body, page_size)

    def count(self, alias: str, query: Body) -> int:
        """How many documents match ``query``."""
        response = self.guard.call_with_retry(self.client.count, index=alias, body={"query": query})
        return int(response["count"])

    def indices_of(self, alias: str) -> list[str]:
        """The concrete indices behind ``alias`` (opensearch-py's NotFoundError when absent)."""
        return list(self.guard.call_with_retry(self.client.indices.get_alias, name=alias))
