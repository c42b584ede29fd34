"""The OpenSearch sink: ``apply_writes``, the one path by which every command writes documents.

Ordering (docs/ordering.md): each document carries its version in ``_syncer``
(``syncer.core.versions``). A write is sent only when the planner finds it newer than the indexed
state, and it is conditional on the document not having changed since it was read
(``if_seq_no`` and ``if_primary_term``, or ``create`` when absent). Deletes write tombstones,
never real deletes, so an older change can never bring a deleted item back; the alias filters
tombstones out. Every ``_bulk`` item's result is read; none is ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from syncer.config import OpenSearchConfig
from syncer.core import jsoncodec
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentRef,
    DocumentWrite,
    IndexedDocument,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
    indexed_document,
)
from syncer.errors import PoisonRecordError, SearchUnavailableError
from syncer.sinks.resilience import Deadline, Downstream, PendingItemsError, reported_failure

log = logging.getLogger(__name__)


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
    not missing after the swap. Every round of every batch asks whether it exists (sent
    alongside the main aliases' ``_mget``), so a warm Lambda container needs no restart to see
    it.
    """
    return f"{alias}{REINDEX_ALIAS_SUFFIX}"


def alias_exists(client: Any, alias: str, timeout_s: float | None = None) -> bool:
    """Whether ``alias`` exists (a ``HEAD /_alias`` request)."""
    return bool(client.indices.exists_alias(name=alias, params=_timeout_params(timeout_s)))


def _timeout_params(timeout_s: float | None) -> dict[str, Any]:
    return {} if timeout_s is None else {"request_timeout": timeout_s}


def read_targets(
    client: Any,
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
    includes = sorted({SYNCER_FIELD, *fields})
    found: dict[DocumentRef, TargetState] = {}
    for start in range(0, len(refs), chunk_size):
        chunk = refs[start : start + chunk_size]
        response = client.mget(
            body={"docs": [{"_index": index, "_id": doc_id} for index, doc_id in chunk]},
            params={
                "_source_includes": ",".join(includes),
                "realtime": "true",
                **_timeout_params(timeout_s),
            },
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


def scroll_pages(
    client: Any, guard: Downstream, index: str, body: Mapping[str, Any], page_size: int
) -> Iterator[list[dict[str, Any]]]:
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


def check_shards(response: Mapping[str, Any], what: str) -> None:
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


def raise_for_mget_error(error: Mapping[str, Any]) -> None:
    """Turn an ``_mget`` per-document error into an exception with OpenSearch's words."""
    kind = error.get("type", "")
    reason = error.get("reason", "")
    if kind == "index_not_found_exception":
        raise SearchUnavailableError(f"{kind}: {reason}: run `syncer setup` to create the index")
    raise SearchUnavailableError(f"_mget failed: {kind}: {reason}")


def _action_line(write: DocumentWrite) -> dict[str, Any]:
    index, doc_id = write.ref
    if write.expected is None:
        return {"create": {"_index": index, "_id": doc_id}}
    action = "delete" if write.kind is WriteKind.DELETE else "index"
    return {
        action: {
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
            entry = jsoncodec.dumps(_action_line(write)) + b"\n"
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


def item_result(item: Mapping[str, Any]) -> ItemResult:
    """How one ``_bulk`` item ended (the one table of item statuses; docs/operations.md).

    A 401/403 (a write block such as ``index.blocks.write``, read-only indices, the security
    plugin) is about the index or the cluster, not the document: it is retried and reported,
    never dead-lettered.
    """
    ((action, result),) = item.items()
    status = int(result.get("status", 500))
    if status < 300 or (action == "delete" and status == 404):  # deleting: gone is the aim
        return ItemResult(ItemStatus.OK)
    error = result.get("error") or {}
    reason = f"{status} {error.get('type', '')}: {error.get('reason', '')}".strip()
    if status == 409:
        return ItemResult(ItemStatus.CONFLICT, reason)
    if status in (401, 403, 429) or status >= 500:
        return ItemResult(ItemStatus.TRANSIENT, reason)
    if status == 404 and error.get("type") == "index_not_found_exception":
        return ItemResult(ItemStatus.TRANSIENT, reason + " (run `syncer setup`)")
    return ItemResult(ItemStatus.PERMANENT, reason)


def send_bulk(
    client: Any,
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
    params = _timeout_params(timeout_s)
    if refresh is not None:
        params["refresh"] = refresh
    response = client.bulk(body=body, params=params)
    items = response.get("items", [])
    if len(items) != len(writes):
        raise SearchUnavailableError(f"_bulk answered {len(items)} items for {len(writes)} actions")
    return {write.ref: item_result(item) for write, item in zip(writes, items, strict=True)}


_SETTLED_BY_KIND = {
    WriteKind.INDEX: Settled.WRITTEN,
    WriteKind.TOMBSTONE: Settled.TOMBSTONED,
    WriteKind.DELETE: Settled.DELETED,
}


@dataclass(frozen=True, slots=True)
class RefOutcome:
    status: Settled
    reason: str = ""


@dataclass(slots=True)
class ApplyResult:
    """One outcome per ref, the first indexed state seen per ref, and what it cost."""

    outcomes: dict[DocumentRef, RefOutcome] = field(default_factory=dict)
    observed: dict[DocumentRef, IndexedDocument] = field(default_factory=dict)
    bulk_seconds: float = 0.0
    rereads: int = 0

    def count(self, status: Settled) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome.status is status)

    def status(self, ref: DocumentRef) -> Settled | None:
        outcome = self.outcomes.get(ref)
        return None if outcome is None else outcome.status

    def _settle(self, ref: DocumentRef, status: Settled, reason: str = "") -> None:
        self.outcomes[ref] = RefOutcome(status, reason)


Planner = Callable[[DocumentRef, TargetState, ReadState | None], DocumentWrite | Verdict]
Rereader = Callable[[Sequence[DocumentRef]], Mapping[DocumentRef, ReadState | str]]


def apply_writes(
    client: Any,
    guard: Downstream,
    refs: Sequence[DocumentRef],
    plan: Planner,
    limits: OpenSearchConfig,
    *,
    reread: Rereader | None = None,
    fields: Iterable[str] = (),
    optional_aliases: frozenset[str] = frozenset(),
    deadline: Deadline | None = None,
    read_first: bool = True,
    refresh: str | None = None,
    replan_conflicts: bool = True,
) -> ApplyResult:
    """The one way syncer writes documents: read, plan, write conditionally, settle every item.

    Each round reads the unsettled refs' current state (``_mget``; the first round may assume
    absence with ``read_first=False``, as a scan into a new index does), asks ``plan`` for a
    conditional write, sends the writes in ``_bulk`` chunks and reads every item's result. A
    version conflict (409) re-plans the ref against what is there now (or settles it as
    ``CONFLICT`` when ``replan_conflicts`` is off); a transient item is sent again; a permanent
    one is ``REJECTED``. ``Verdict.REREAD`` asks ``reread`` for the item as the table holds it
    now and plans once more with it. Refs whose alias is optional and absent are ``SKIPPED``.
    Rounds are bounded by the guard's retry policy and ``deadline``; what is left then is
    ``FAILED`` with the reason. Errors no table knows (bugs) propagate.
    """
    result = ApplyResult()
    pending = list(dict.fromkeys(refs))
    if not pending:
        return result
    fields = tuple(fields)
    first_round = True
    try:
        for attempt in guard.retrying(deadline):
            with attempt:
                pending = [ref for ref in pending if ref not in result.outcomes]
                targets = guard.call(
                    _read_round,
                    client,
                    pending,
                    fields,
                    optional_aliases,
                    _cap(limits, deadline),
                    read=read_first or not first_round,
                )
                first_round = False
                pending = _skip_absent_optional(pending, targets, result)
                writes = _plan_round(pending, targets, plan, reread, result)
                reasons = _send_writes(client, guard, writes, limits, result, deadline, refresh)
                if not replan_conflicts:
                    for ref, reason in reasons.conflicts:
                        result._settle(ref, Settled.CONFLICT, reason)
                left = sum(1 for ref in pending if ref not in result.outcomes)
                if left:
                    why = reasons.transient[0] if reasons.transient else "version conflicts"
                    raise PendingItemsError(left, why)
    except Exception as error:  # noqa: BLE001 - reported_failure re-raises bugs
        reason = reported_failure(error, "OpenSearch write")
        for ref in pending:
            if ref not in result.outcomes:
                result._settle(ref, Settled.FAILED, reason)
    return result


def _cap(limits: OpenSearchConfig, deadline: Deadline | None) -> float | None:
    return None if deadline is None else deadline.request_timeout(limits.timeout_s)


# Threads that send a round's reindex-alias HEADs while the calling thread sends its _mget.
SIDE_REQUESTS = 4
_side_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the pid that made it, the pool)
_side_pool_lock = threading.Lock()


def _side_requests() -> ThreadPoolExecutor:
    """The process's pool for requests sent alongside the ``_mget``, made on first use.

    A forked child gets its own: the parent's pool object would come without its threads.
    """
    global _side_pool
    with _side_pool_lock:
        if _side_pool is None or _side_pool[0] != os.getpid():
            pool = ThreadPoolExecutor(SIDE_REQUESTS, thread_name_prefix="syncer-head")
            _side_pool = (os.getpid(), pool)
        return _side_pool[1]


def _read_round(
    client: Any,
    pending: Sequence[DocumentRef],
    fields: Sequence[str],
    optional_aliases: frozenset[str],
    timeout_s: float | None,
    *,
    read: bool,
) -> dict[DocumentRef, TargetState]:
    """The round's target states; refs of optional aliases that do not exist are left out.

    Whether each optional alias exists (a ``HEAD`` per alias, asked afresh every round) does
    not depend on the main aliases' ``_mget``, so the ``HEAD`` requests go out on other
    threads while the ``_mget`` runs here. Only an optional alias that exists (a reindex is
    running: rare) costs a second ``_mget``, for its refs. Without ``read`` every state is
    taken as absent (a scan into a new index). One attempt: any failure fails it whole.
    """
    asked = sorted({ref[0] for ref in pending if ref[0] in optional_aliases})
    heads: dict[str, Future[bool]] = {}
    if asked:
        pool = _side_requests()
        heads = {alias: pool.submit(alias_exists, client, alias, timeout_s) for alias in asked}
    try:
        required = [ref for ref in pending if ref[0] not in optional_aliases]
        targets = _read_or_assume(client, required, fields, optional_aliases, timeout_s, read)
    finally:
        wait_for_futures(heads.values())  # none outlives the attempt, even a failed one
    existing = {alias for alias, head in heads.items() if head.result()}
    optional = [ref for ref in pending if ref[0] in existing]
    if optional:
        targets.update(_read_or_assume(client, optional, fields, optional_aliases, timeout_s, read))
    return targets


def _read_or_assume(
    client: Any,
    refs: Sequence[DocumentRef],
    fields: Sequence[str],
    optional_aliases: frozenset[str],
    timeout_s: float | None,
    read: bool,
) -> dict[DocumentRef, TargetState]:
    if not refs:
        return {}
    if not read:
        return {ref: TargetState(ref[0], None) for ref in refs}
    return read_targets(client, refs, fields, optional_aliases, timeout_s=timeout_s)


def _skip_absent_optional(
    pending: list[DocumentRef],
    targets: Mapping[DocumentRef, TargetState],
    result: ApplyResult,
) -> list[DocumentRef]:
    """Settle the refs ``_read_round`` left out (their optional alias is absent) as skipped."""
    kept = []
    for ref in pending:
        if ref in targets:
            kept.append(ref)
        else:
            result._settle(ref, Settled.SKIPPED, "no reindex running")
    return kept


_Writes = dict[DocumentRef, tuple[DocumentWrite, list[DocumentRef]]]


def _plan_round(
    pending: Sequence[DocumentRef],
    targets: Mapping[DocumentRef, TargetState],
    plan: Planner,
    reread: Rereader | None,
    result: ApplyResult,
) -> _Writes:
    """Plan each pending ref against its target; re-read the items whose order is unknown."""
    writes: _Writes = {}
    to_reread: list[DocumentRef] = []

    def decide(ref: DocumentRef, target: TargetState, read: ReadState | None) -> None:
        concrete = (target.index, ref[1])
        if concrete in writes:  # two aliases on one index: one write serves both
            writes[concrete][1].append(ref)
            return
        try:
            decision = plan(ref, target, read)
        except PoisonRecordError as error:
            result._settle(ref, Settled.REJECTED, str(error))
            return
        if decision is Verdict.SKIP:
            result._settle(ref, Settled.SKIPPED)
        elif decision is Verdict.REREAD:
            if read is not None or reread is None:
                raise AssertionError(f"planner asked to re-read {ref} with nothing to re-read")
            to_reread.append(ref)
        else:  # written to the concrete index the state was read from
            writes[concrete] = (dataclasses.replace(decision, ref=concrete), [ref])

    for ref in pending:
        target = targets.get(ref)
        if target is None:  # an optional alias that does not exist
            result._settle(ref, Settled.SKIPPED, "no reindex running")
            continue
        if target.document is not None:
            result.observed.setdefault(ref, target.document)
        decide(ref, target, None)
    if to_reread and reread is not None:
        result.rereads += len(to_reread)
        fresh = reread(to_reread)
        for ref in to_reread:
            state = fresh.get(ref, "the item could not be read again")
            if isinstance(state, str):
                result._settle(ref, Settled.FAILED, state)
            else:
                decide(ref, targets[ref], state)
    return writes


@dataclass(slots=True)
class _RoundReasons:
    transient: list[str] = field(default_factory=list)
    conflicts: list[tuple[DocumentRef, str]] = field(default_factory=list)


def _send_writes(
    client: Any,
    guard: Downstream,
    writes: _Writes,
    limits: OpenSearchConfig,
    result: ApplyResult,
    deadline: Deadline | None,
    refresh: str | None,
) -> _RoundReasons:
    """Send the round's writes in ``_bulk`` chunks and settle every ref by its item's result."""
    reasons = _RoundReasons()
    planned = [write for write, _ in writes.values()]
    unencodable: list[tuple[DocumentWrite, str]] = []
    chunks = bulk_chunks(planned, limits.bulk_max_actions, limits.bulk_max_bytes, unencodable)
    for chunk, body in chunks:
        started = time.perf_counter()
        try:
            item_results = guard.call(
                send_bulk, client, body, chunk, refresh, _cap(limits, deadline)
            )
        finally:
            result.bulk_seconds += time.perf_counter() - started
        for write in chunk:
            outcome = item_results[write.ref]
            for ref in writes[write.ref][1]:
                if outcome.status is ItemStatus.OK:
                    result._settle(ref, _SETTLED_BY_KIND[write.kind])
                elif outcome.status is ItemStatus.PERMANENT:
                    reason = f"OpenSearch rejected the document: {outcome.reason}"
                    result._settle(ref, Settled.REJECTED, reason)
                elif outcome.status is ItemStatus.CONFLICT:
                    reasons.conflicts.append((ref, outcome.reason))
                else:
                    reasons.transient.append(outcome.reason)
    for write, reason in unencodable:
        for ref in writes[write.ref][1]:
            result._settle(ref, Settled.REJECTED, reason)
    return reasons


def make_client(settings: OpenSearchConfig, password: str | None = None) -> Any:
    """An opensearch-py client with its own retries off: syncer's retry policy is the only one.

    It is shared by threads: ``apply_writes`` sends its ``HEAD`` requests from a small pool.

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
        # One connection for the calling thread and one per side request (``_read_round``):
        # urllib3 would otherwise open and discard a connection for every HEAD, with a warning.
        "pool_maxsize": SIDE_REQUESTS + 1,
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
