"""The search store the pipeline and the commands are handed: OpenSearch behind its guard."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from syncer.config import OpenSearchConfig
from syncer.core.documents import DocumentRef
from syncer.core.writes import ApplyResult, Planner, WriteOptions
from syncer.sinks.search.aliases import alias_exists
from syncer.sinks.search.reads import Body, Hit, check_shards, scroll_pages
from syncer.sinks.search.writes import write_documents

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from syncer.sinks.resilience import Downstream

_DEFAULTS = WriteOptions()


class SearchSink:
    """OpenSearch with its retry and breaker: every request here goes through the guard."""

    __slots__ = ("client", "guard", "limits")

    def __init__(self, client: OpenSearch, guard: Downstream, limits: OpenSearchConfig) -> None:
        self.client = client
        self.guard = guard
        self.limits = limits

    def apply(
        self, refs: Sequence[DocumentRef], plan: Planner, options: WriteOptions = _DEFAULTS
    ) -> ApplyResult:
        """Write what ``plan`` decides for each ref (``write_documents``)."""
        return write_documents(self.client, self.guard, self.limits, refs, plan, options)

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
