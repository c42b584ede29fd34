"""Reading documents: the target states of refs (``_mget``) and scrolls that check every shard."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncer.core.documents import SYNCER_FIELD, DocumentRef, TargetState, indexed_document
from syncer.errors import SearchUnavailableError
from syncer.sinks.resilience import Downstream
from syncer.sinks.search.aliases import timeout_params

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

# OpenSearch speaks JSON, which opensearch-py leaves untyped: named once here.
Hit = dict[str, Any]  # a search hit or an ``_mget`` doc
Body = Mapping[str, Any]  # a request body, a query or a response


def read_targets(
    client: OpenSearch,
    refs: Sequence[DocumentRef],
    fields: Iterable[str],
    optional_aliases: frozenset[str] = frozenset(),
    chunk_size: int = 5000,
    timeout_s: float | None = None,
) -> dict[DocumentRef, TargetState]:
    """``_mget`` ``_syncer`` (and ``fields``) of each (alias, id): its concrete index and state.

    Refs whose alias is in ``optional_aliases`` and does not exist are left out; a missing
    required alias raises with a hint to run ``syncer setup``.
    """
    wanted = target_filter(fields)
    found: dict[DocumentRef, TargetState] = {}
    for start in range(0, len(refs), chunk_size):
        chunk = refs[start : start + chunk_size]
        response = client.mget(
            body={"docs": [{"_index": index, "_id": doc_id} for index, doc_id in chunk]},
            params={"filter_path": wanted, "realtime": "true", **timeout_params(timeout_s)},
        )
        for ref, doc in zip(chunk, response["docs"], strict=True):
            if "error" in doc:
                error = doc["error"]
                if ref[0] in optional_aliases and error.get("type") == "index_not_found_exception":
                    continue
                raise_for_mget_error(error)
            document = None
            if doc.get("found"):
                document = indexed_document(
                    doc.get("_source") or {}, int(doc["_seq_no"]), int(doc["_primary_term"])
                )
            found[ref] = TargetState(doc["_index"], document)
    return found


# What an ``_mget`` of target states keeps of each doc, besides ``_source``'s wanted fields.
_TARGET_KEYS = ("_index", "_id", "found", "_seq_no", "_primary_term", "error")


def target_filter(fields: Iterable[str]) -> str:
    """The ``filter_path`` that trims an ``_mget`` response to ``_syncer`` and ``fields``.

    Why not ``_source_includes``: OpenSearch filters ``_source`` by parsing each document into
    a map and writing the kept part again, which cost it three to four times the get itself
    (docs/ordering.md, "Costs"). ``filter_path`` is applied to the response as it is streamed
    out, without that map, and keeps the response as small. The get is the same realtime get of
    the same document.
    """
    kept = [f"docs.{key}" for key in _TARGET_KEYS]
    kept += [f"docs._source.{name}" for name in sorted({SYNCER_FIELD, *fields})]
    return ",".join(kept)


def scroll_pages(
    client: OpenSearch, guard: Downstream, index: str, body: Body, page_size: int
) -> Iterator[list[Hit]]:
    """Every hit of ``body``'s query in ``index``, a page at a time (a scroll in ``_doc`` order).

    A scroll sees the index as it was when it began, costs no sorting, and is cleared at the
    end, also when the caller stops early.
    """
    request = {**body, "size": page_size, "sort": ["_doc"]}
    response = guard.call_with_retry(
        client.search, index=index, body=request, params={"scroll": "2m"}
    )
    scroll_id = response.get("_scroll_id")
    try:
        while True:
            check_shards(response, f"scroll of {index}")
            if not response["hits"]["hits"]:
                break
            yield response["hits"]["hits"]
            response = guard.call_with_retry(
                client.scroll, body={"scroll_id": scroll_id, "scroll": "2m"}
            )
            scroll_id = response.get("_scroll_id") or scroll_id
    finally:
        if scroll_id:
            guard.call_with_retry(
                client.clear_scroll, body={"scroll_id": [scroll_id]}, params={"ignore": "404"}
            )


def check_shards(response: Body, what: str) -> None:
    """Fail loudly when a search or scroll answered without some shards' hits.

    OpenSearch answers 200 with the hits of the shards that worked and counts the others in
    ``_shards.failed``: pages read so would silently lack documents (verify's ghost pass).
    """
    shards = response.get("_shards") or {}
    failed = shards.get("failed") or 0
    if failed:
        failures = shards.get("failures") or [{}]
        reason = (failures[0].get("reason") or {}).get("reason", "no reason given")
        raise SearchUnavailableError(
            f"{what}: {failed} of {shards.get('total', '?')} shards failed ({reason})"
        )


def raise_for_mget_error(error: Body) -> None:
    """Turn an ``_mget`` per-document error into an exception with OpenSearch's words."""
    kind = error.get("type", "")
    reason = error.get("reason", "")
    if kind == "index_not_found_exception":
        raise SearchUnavailableError(f"{kind}: {reason}: run `syncer setup` to create the index")
    raise SearchUnavailableError(f"_mget failed: {kind}: {reason}")
