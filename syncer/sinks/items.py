"""The DynamoDB edge: key schema, consistent reads by key, and paged scans, each with a read version.

Every command and the pipeline read items through ``ItemReader``: one scan paginator, one
consistent re-read. A read's version is the interval the request ran in
(``syncer.core.versions.read_version``): the item is as it was at some moment inside it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.core.attributes import decode_item
from syncer.core.documents import ReadState
from syncer.core.keys import TypedKey, boto_key, key_document_id
from syncer.core.records import document_id
from syncer.core.versions import Version, read_version
from syncer.errors import DownstreamUnavailableError, PendingItemsError
from syncer.sinks.resilience import Deadline, Downstream

BATCH_GET_LIMIT = 100
SCAN_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One page of a consistent scan: boto3-typed items, where to go on, and when it was read."""

    items: list[dict[str, Any]]
    last_key: dict[str, Any] | None  # LastEvaluatedKey; None on the segment's last page
    version: Version  # the interval the page's request ran in


def _key_identity(key: Mapping[str, Mapping[str, Any]]) -> tuple[Any, ...]:
    """A boto3-typed key as a hashable value: the key asked for and the item answered match."""
    return tuple(
        (name, tag, bytes(value) if tag == "B" else value)
        for name, typed in sorted(key.items())
        for tag, value in typed.items()
    )


class ItemReader:
    """A table's items, read consistently through the DynamoDB guard's retry and breaker."""

    __slots__ = ("_client", "_guard")

    def __init__(self, client: Any, guard: Downstream) -> None:
        self._client = client
        self._guard = guard

    def describe(self, table: str) -> dict[str, Any]:
        """``DescribeTable``'s ``Table``."""
        description: dict[str, Any] = self._guard.call_with_retry(
            self._client.describe_table, TableName=table
        )["Table"]
        return description

    def key_schema(self, table: str) -> dict[str, str]:
        """The table's key attributes and their types (S, N or B), hash key first."""
        description = self.describe(table)
        types = {
            d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]
        }
        return {k["AttributeName"]: types[k["AttributeName"]] for k in description["KeySchema"]}

    def read(
        self,
        table: str,
        keys: Sequence[Mapping[str, Mapping[str, Any]]],
        deadline: Deadline | None = None,
        ids: Sequence[str] | None = None,
    ) -> dict[str, ReadState]:
        """Consistent reads of ``keys`` (either typed form), by document id: the item, or None
        where it is gone, each with the read's version. ``ids`` are the keys' document ids when
        the caller has them (the pipeline: decoded once), so none is computed again.

        BatchGetItem's UnprocessedKeys are retried with the guard's backoff, as AWS asks.
        """
        if self._client is None:
            raise DownstreamUnavailableError("no DynamoDB client to read items")
        requested = [boto_key(key) for key in keys]
        wanted = list(ids) if ids is not None else [key_document_id(k) for k in requested]
        by_key = {_key_identity(k): doc_id for k, doc_id in zip(requested, wanted, strict=True)}
        started = time.time()
        found = self._batch_get(table, requested, deadline, by_key)
        version = read_version(started, time.time())
        return {doc_id: ReadState(found.get(doc_id), version) for doc_id in wanted}

    def _batch_get(
        self,
        table: str,
        keys: Sequence[TypedKey],
        deadline: Deadline | None,
        by_key: Mapping[tuple[Any, ...], str],
    ) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        guard = self._guard
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            chunk = list(keys[start : start + BATCH_GET_LIMIT])
            key_names = list(chunk[0])
            pending: list[Any] = chunk
            for attempt in guard.retrying(deadline):
                with attempt:
                    guard.check_time(deadline)
                    response = guard.call(
                        self._client.batch_get_item,
                        RequestItems={table: {"Keys": pending, "ConsistentRead": True}},
                    )
                    for item in response.get("Responses", {}).get(table, []):
                        decoded = decode_item(item)
                        doc_id = by_key.get(_key_identity({n: item[n] for n in key_names}))
                        if doc_id is None:  # spelled otherwise than asked (a number's form)
                            doc_id = document_id({name: decoded[name] for name in key_names})
                        found[doc_id] = decoded
                    pending = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                    if pending:
                        raise PendingItemsError(len(pending), "UnprocessedKeys from BatchGetItem")
        return found

    def scan(
        self,
        table: str,
        *,
        segment: int = 0,
        total_segments: int = 1,
        start_key: Mapping[str, Any] | None = None,
        page_size: int = SCAN_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[ScanPage]:
        """One segment of a consistent parallel scan, a page at a time (at most ``limit`` items).

        Memory follows the page size, not the table.
        """
        request: dict[str, Any] = {
            "TableName": table,
            "ConsistentRead": True,
            "Segment": segment,
            "TotalSegments": total_segments,
            "Limit": page_size if limit is None else min(page_size, limit),
        }
        if start_key:
            request["ExclusiveStartKey"] = boto_key(start_key)
        left = limit
        while True:
            started = time.time()
            page = self._guard.call_with_retry(self._client.scan, **request)
            version = read_version(started, time.time())
            items = page.get("Items", [])
            if left is not None:
                items = items[:left]
                left -= len(items)
            last = page.get("LastEvaluatedKey")
            yield ScanPage(items, last, version)
            if not last or left == 0:
                return
            request["ExclusiveStartKey"] = last
