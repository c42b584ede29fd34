"""``_bulk`` requests: writes as NDJSON bodies cut by count and bytes, and each item's result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncer.core import jsoncodec
from syncer.core.documents import DocumentRef, DocumentWrite, WriteKind
from syncer.core.writes import ItemResult as ItemResult
from syncer.core.writes import ItemStatus as ItemStatus
from syncer.errors import SearchUnavailableError
from syncer.sinks.search.aliases import timeout_params

if TYPE_CHECKING:
    from opensearchpy import OpenSearch


def _action_line(write: DocumentWrite, aliases: frozenset[str] = frozenset()) -> dict[str, Any]:
    index, doc_id = write.ref
    meta: dict[str, Any] = {"_index": index, "_id": doc_id}
    if write.expected is None:
        action = "create"
    else:
        action = "delete" if write.kind is WriteKind.DELETE else "index"
        meta["if_seq_no"] = write.expected.seq_no
        meta["if_primary_term"] = write.expected.primary_term
    if index in aliases:  # written through the alias: never create an index by its name
        meta["require_alias"] = True
    return {action: meta}


def bulk_chunks(
    writes: Sequence[DocumentWrite],
    max_actions: int,
    max_bytes: int,
    unencodable: list[tuple[DocumentWrite, str]] | None = None,
    aliases: frozenset[str] = frozenset(),
) -> Iterator[tuple[list[DocumentWrite], bytes]]:
    """Serialise writes to NDJSON and cut them into request bodies by count and bytes.

    A body JSON cannot encode (text with a lone surrogate) goes to ``unencodable`` with the
    reason when that list is given, so one bad item never blocks the others. A write into one
    of ``aliases`` (through the alias: planned unread, or a rebuild's) carries ``require_alias``:
    if the alias is gone, OpenSearch refuses it (404) instead of creating an index by its name.
    """
    chunk: list[DocumentWrite] = []
    lines: list[bytes] = []
    size = 0
    for write in writes:
        try:
            entry = jsoncodec.dumps(_action_line(write, aliases)) + b"\n"
            if write.kind is not WriteKind.DELETE:
                entry += jsoncodec.dumps(write.body) + b"\n"
        except (TypeError, ValueError) as error:  # orjson.JSONEncodeError is a TypeError
            if unencodable is None:
                raise
            unencodable.append((write, f"document cannot be encoded as JSON: {error}"))
            continue
        if chunk and (len(chunk) >= max_actions or size + len(entry) > max_bytes):
            yield chunk, b"".join(lines)
            chunk, lines, size = [], [], 0
        chunk.append(write)
        lines.append(entry)
        size += len(entry)
    if chunk:
        yield chunk, b"".join(lines)


_OK = ItemResult(ItemStatus.OK)  # frozen: one for every item that succeeded


def item_result(item: Mapping[str, Any]) -> ItemResult:
    """How one ``_bulk`` item ended (the one table of item statuses; docs/operations.md); a
    document written says where and with which ``_seq_no`` and ``_primary_term``.

    A 401/403 (a write block such as ``index.blocks.write``, read-only indices, the security
    plugin) is about the index or the cluster, not the document: it is retried and reported,
    never dead-lettered.
    """
    ((action, result),) = item.items()
    status = int(result.get("status", 500))
    if status < 300:
        if action == "delete" or "_seq_no" not in result or "_primary_term" not in result:
            return _OK
        return ItemResult(ItemStatus.OK, "", result)
    if action == "delete" and status == 404:  # deleting: gone is the aim
        return _OK
    error = result.get("error") or {}
    reason = f"{status} {error.get('type', '')}: {error.get('reason', '')}".strip()
    if status == 409:
        return ItemResult(ItemStatus.CONFLICT, reason)
    if status in (401, 403, 429) or status >= 500:
        return ItemResult(ItemStatus.TRANSIENT, reason)
    if status == 404 and error.get("type") == "index_not_found_exception":
        return ItemResult(ItemStatus.TRANSIENT, reason + " (run `syncer setup`)")
    return ItemResult(ItemStatus.PERMANENT, reason)


# What a ``_bulk`` answer keeps per item: the status, the error, and where a write landed (for
# ``KnownStates``); the ids, versions, results and shard counts are never read, and parsing
# them was most of the answer's cost.
BULK_FILTER = (
    "took,errors,items.*._index,items.*._seq_no,items.*._primary_term,items.*.status,items.*.error"
)


def send_bulk(
    client: OpenSearch,
    body: bytes,
    writes: Sequence[DocumentWrite],
    refresh: str | None = None,
    timeout_s: float | None = None,
) -> dict[DocumentRef, ItemResult]:
    """Send one ``_bulk`` body and return every item's result; item errors are never ignored.

    ``refresh`` (``"true"`` or ``"wait_for"``) answers only once the writes are visible to
    search (caches filled from search results need it: docs/cache-consistency.md); None leaves
    refreshing to the index.
    """
    params = timeout_params(timeout_s)
    params["filter_path"] = BULK_FILTER
    if refresh is not None:
        params["refresh"] = refresh
    response = client.bulk(body=body, params=params)
    items = response.get("items", [])
    if len(items) != len(writes):
        raise SearchUnavailableError(f"_bulk answered {len(items)} items for {len(writes)} actions")
    return {write.ref: item_result(item) for write, item in zip(writes, items, strict=True)}
