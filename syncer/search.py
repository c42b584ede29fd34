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
DocumentRef = tuple[str, str]  # (alias or concrete index, document id)


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


REINDEX_ALIAS_SUFFIX = "-reindexing"


def reindex_alias(alias: str) -> str:
    """The alias that points at the index a running ``syncer reindex`` is filling.

    Stream writes go to it as well as to the main alias, so changes made during a reindex are
    not missing after the swap. Every batch checks whether it exists before its ``_mget``, so a
    warm Lambda container needs no restart to see it.
    """
    return f"{alias}{REINDEX_ALIAS_SUFFIX}"


def alias_exists(client: Any, alias: str) -> bool:
    """Whether ``alias`` exists (a ``HEAD /_alias`` request)."""
    return bool(client.indices.exists_alias(name=alias))


@dataclass(frozen=True, slots=True)
class TargetState:
    """Where a document lives behind an alias (the concrete index) and what it holds."""

    index: str
    document: IndexedDocument | None


def read_targets(
    client: Any,
    refs: Sequence[DocumentRef],
    fields: Iterable[str],
    optional_aliases: frozenset[str] = frozenset(),
    chunk_size: int = 5000,
) -> dict[DocumentRef, TargetState]:
    """``_mget`` ``_syncer`` (and ``fields``) of each (alias, id): its concrete index and state.

    Refs whose alias is in ``optional_aliases`` and does not exist are left out; a missing
    required alias raises with a hint to run ``syncer setup``.
    """
    includes = sorted({SYNCER_FIELD, *fields})
    found: dict[DocumentRef, TargetState] = {}
    for start in range(0, len(refs), chunk_size):
        chunk = refs[start : start + chunk_size]
        response = client.mget(
            body={"docs": [{"_index": index, "_id": doc_id} for index, doc_id in chunk]},
            params={"_source_includes": ",".join(includes), "realtime": "true"},
        )
        for ref, doc in zip(chunk, response["docs"], strict=True):
            if "error" in doc:
                error = doc["error"]
                if ref[0] in optional_aliases and error.get("type") == "index_not_found_exception":
                    continue
                raise_for_mget_error(error)
            found[ref] = TargetState(
                doc["_index"], _indexed_document(doc) if doc.get("found") else None
            )
    return found


def _indexed_document(doc: Mapping[str, Any]) -> IndexedDocument:
    source = doc.get("_source") or {}
    meta = source.get(SYNCER_FIELD) or {}
    seq = meta.get("seq")
    return IndexedDocument(
        sequence_number=int(seq) if seq is not None else None,
        deleted=bool(meta.get("deleted", False)),
        seq_no=int(doc["_seq_no"]),
        primary_term=int(doc["_primary_term"]),
        fields=source,
    )


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
    writes: Sequence[DocumentWrite],
    max_actions: int,
    max_bytes: int,
    unencodable: list[tuple[DocumentWrite, str]] | None = None,
) -> Iterator[tuple[list[DocumentWrite], bytes]]:
    """Serialise writes to NDJSON and cut them into request bodies by count and bytes.

    A body JSON cannot encode (text with a lone surrogate) goes to ``unencodable`` with the
    reason when that list is given, so one bad item never blocks the others.
    """
    chunk: list[DocumentWrite] = []
    lines: list[bytes] = []
    size = 0
    for write in writes:
        try:
            entry = (
                jsoncodec.dumps(_action_line(write)) + b"\n" + jsoncodec.dumps(write.body) + b"\n"
            )
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


def item_result(item: Mapping[str, Any]) -> ItemResult:
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
    client: Any, body: bytes, writes: Sequence[DocumentWrite], refresh: str | None = None
) -> dict[DocumentRef, ItemResult]:
    """Send one ``_bulk`` body and return every item's result; item errors are never ignored.

    ``refresh`` (``"true"`` or ``"wait_for"``) answers only once the writes are visible to
    search (caches filled from search results need it: docs/cache-consistency.md); None leaves
    refreshing to the index.
    """
    # Writes name concrete indices that _mget just found, so OCC numbers belong to them.
    options = {} if refresh is None else {"refresh": refresh}
    response = client.bulk(body=body, **options)
    items = response.get("items", [])
    if len(items) != len(writes):
        raise RuntimeError(f"_bulk answered {len(items)} items for {len(writes)} actions")
    return {write.ref: item_result(item) for write, item in zip(writes, items, strict=True)}


def make_client(settings: OpenSearchConfig, password: str | None = None) -> Any:
    """An opensearch-py client with its own retries off: syncer's retry policy is the only one.

    ``auth = "sigv4"`` signs with the function's AWS credentials (service ``es``, or ``aoss``
    for serverless collections); ``basic`` sends username and password; TLS verifies
    certificates, against ``ca_certs`` when given.
    """
    from opensearchpy import OpenSearch

    options: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": settings.timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        "http_compress": False,
        "verify_certs": settings.verify_certs,
    }
    if settings.ca_certs:
        options["ca_certs"] = settings.ca_certs
    if settings.auth == "basic":
        options["http_auth"] = (settings.username, password)
    elif settings.auth == "sigv4":
        import boto3
        from opensearchpy import Urllib3AWSV4SignerAuth

        session = boto3.Session()
        region = settings.aws_region or session.region_name
        options["http_auth"] = Urllib3AWSV4SignerAuth(
            session.get_credentials(), region, settings.aws_service
        )
    return OpenSearch(**options)
