"""The OpenSearch sink: read the indexed versions, write documents in ``_bulk``, read every item.

Ordering (docs/ordering.md): each document carries ``_syncer.seq``, the stream sequence number
that produced it. A write is sent only when it is newer than the indexed one, and it is made
conditional on the document not having changed since it was read (``if_seq_no`` and
``if_primary_term``, or ``create`` when absent). Deletes write tombstones, never real deletes,
so an older change can never bring a deleted item back; the alias filters tombstones out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from syncer import jsoncodec
from syncer.config import OpenSearchConfig

SYNCER_FIELD = "_syncer"
DocumentRef = tuple[str, str]  # (index or alias, document id)


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """What the index holds for one key now: enough to order a new write against it."""

    sequence_number: int | None  # None: written by a full scan, older than any stream change
    deleted: bool
    seq_no: int
    primary_term: int
    fields: Mapping[str, Any]


class WriteKind(Enum):
    INDEX = "index"
    TOMBSTONE = "tombstone"


@dataclass(frozen=True, slots=True)
class DocumentWrite:
    """One conditional write of a document (or its tombstone)."""

    ref: DocumentRef
    kind: WriteKind
    body: Mapping[str, Any]
    expected: IndexedDocument | None  # the state it was planned against


class ItemStatus(Enum):
    OK = "ok"
    CONFLICT = "conflict"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class ItemResult:
    status: ItemStatus
    reason: str = ""


def read_indexed_documents(
    client: Any, refs: Sequence[DocumentRef], fields: Iterable[str], chunk_size: int = 5000
) -> dict[DocumentRef, IndexedDocument]:
    """Fetch ``_syncer`` (and ``fields``) of each document with ``_mget``; absent ones are left out."""
    includes = sorted({SYNCER_FIELD, *fields})
    found: dict[DocumentRef, IndexedDocument] = {}
    for start in range(0, len(refs), chunk_size):
        chunk = refs[start : start + chunk_size]
        response = client.mget(
            body={"docs": [{"_index": index, "_id": doc_id} for index, doc_id in chunk]},
            params={"_source_includes": ",".join(includes), "realtime": "true"},
        )
        for ref, doc in zip(chunk, response["docs"], strict=True):
            if "error" in doc:
                raise_for_mget_error(doc["error"])
            if not doc.get("found"):
                continue
            source = doc.get("_source") or {}
            meta = source.get(SYNCER_FIELD) or {}
            seq = meta.get("seq")
            found[ref] = IndexedDocument(
                sequence_number=int(seq) if seq is not None else None,
                deleted=bool(meta.get("deleted", False)),
                seq_no=int(doc["_seq_no"]),
                primary_term=int(doc["_primary_term"]),
                fields=source,
            )
    return found


def raise_for_mget_error(error: Mapping[str, Any]) -> None:
    """Turn an ``_mget`` per-document error into an exception with OpenSearch's words."""
    from opensearchpy.exceptions import NotFoundError, TransportError

    kind = error.get("type", "")
    reason = error.get("reason", "")
    if kind == "index_not_found_exception":
        raise NotFoundError(404, kind, f"{reason}: run `syncer setup` to create the index")
    raise TransportError(500, kind, reason)


def _action_line(write: DocumentWrite) -> dict[str, Any]:
    index, doc_id = write.ref
    if write.expected is None:
        return {"create": {"_index": index, "_id": doc_id}}
    return {
        "index": {
            "_index": index,
            "_id": doc_id,
            "if_seq_no": write.expected.seq_no,
            "if_primary_term": write.expected.primary_term,
        }
    }


def bulk_chunks(
    writes: Sequence[DocumentWrite], max_actions: int, max_bytes: int
) -> Iterator[tuple[list[DocumentWrite], bytes]]:
    """Serialise writes to NDJSON and cut them into request bodies by count and bytes."""
    chunk: list[DocumentWrite] = []
    lines: list[bytes] = []
    size = 0
    for write in writes:
        entry = jsoncodec.dumps(_action_line(write)) + b"\n" + jsoncodec.dumps(write.body) + b"\n"
        if chunk and (len(chunk) >= max_actions or size + len(entry) > max_bytes):
            yield chunk, b"".join(lines)
            chunk, lines, size = [], [], 0
        chunk.append(write)
        lines.append(entry)
        size += len(entry)
    if chunk:
        yield chunk, b"".join(lines)


def _item_result(item: Mapping[str, Any]) -> ItemResult:
    ((_, result),) = item.items()
    status = int(result.get("status", 500))
    if status < 300:
        return ItemResult(ItemStatus.OK)
    error = result.get("error") or {}
    reason = f"{status} {error.get('type', '')}: {error.get('reason', '')}".strip()
    if status == 409:
        return ItemResult(ItemStatus.CONFLICT, reason)
    if status == 429 or status >= 500:
        return ItemResult(ItemStatus.TRANSIENT, reason)
    if status == 404 and error.get("type") == "index_not_found_exception":
        return ItemResult(ItemStatus.TRANSIENT, reason + " (run `syncer setup`)")
    return ItemResult(ItemStatus.PERMANENT, reason)


def send_bulk(
    client: Any, body: bytes, writes: Sequence[DocumentWrite]
) -> dict[DocumentRef, ItemResult]:
    """Send one ``_bulk`` body and return every item's result; item errors are never ignored."""
    response = client.bulk(body=body, params={"require_alias": "true"})
    items = response.get("items", [])
    if len(items) != len(writes):
        raise RuntimeError(f"_bulk answered {len(items)} items for {len(writes)} actions")
    return {write.ref: _item_result(item) for write, item in zip(writes, items, strict=True)}


def make_client(settings: OpenSearchConfig) -> Any:
    """An opensearch-py client with its own retries off: syncer's retry policy is the only one."""
    from opensearchpy import OpenSearch

    return OpenSearch(
        hosts=[settings.url],
        timeout=settings.timeout_s,
        max_retries=0,
        retry_on_timeout=False,
        http_compress=False,
    )
