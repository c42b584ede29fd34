"""apply_writes, the one bulk path: it retries only unsettled items and counts each ref once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncer import jsoncodec
from syncer.config import OpenSearchConfig, ResilienceConfig
from syncer.documents import DocumentRef, DocumentWrite, ReadState, TargetState, Verdict, WriteKind
from syncer.resilience import Downstream
from syncer.search import Settled, apply_writes

FAST = ResilienceConfig(
    initial_backoff_s=0.001, max_backoff_s=0.002, max_attempts=5, breaker_fail_max=50
)


class ScriptedIndex:
    """An in-memory index whose ``_bulk`` answers each item from a script of statuses by id."""

    def __init__(self, statuses: Mapping[str, list[int]]) -> None:
        self.statuses = {doc_id: list(codes) for doc_id, codes in statuses.items()}
        self.documents: dict[str, dict[str, Any]] = {}
        self.sent: list[str] = []  # every id sent in a _bulk, in order

    def mget(self, body: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        docs = []
        for doc in body["docs"]:
            source = self.documents.get(doc["_id"])
            docs.append(
                {"_index": "idx-000001", "_id": doc["_id"], "found": source is not None}
                | ({"_source": source, "_seq_no": 1, "_primary_term": 1} if source else {})
            )
        return {"docs": docs}

    def bulk(self, body: bytes, params: Mapping[str, Any]) -> dict[str, Any]:
        lines = [jsoncodec.loads(line) for line in body.splitlines() if line]
        items = []
        for action, source in zip(lines[::2], lines[1::2], strict=True):
            ((kind, meta),) = action.items()
            doc_id = meta["_id"]
            self.sent.append(doc_id)
            script = self.statuses.get(doc_id, [])
            status = script.pop(0) if script else 201
            if status < 300:
                self.documents[doc_id] = source
            error = {} if status < 300 else {"error": {"type": "x", "reason": str(status)}}
            items.append({kind: {"_id": doc_id, "status": status, **error}})
        return {"items": items}


def _plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> DocumentWrite:
    body = {"name": ref[1]}
    return DocumentWrite((target.index, ref[1]), WriteKind.INDEX, body, target.document)


def _apply(index: ScriptedIndex, ids: Sequence[str], **options: Any) -> Any:
    refs = [("idx", doc_id) for doc_id in ids]
    guard = Downstream("opensearch", FAST)
    return apply_writes(index, guard, refs, _plan, OpenSearchConfig(), **options)


def test_only_items_left_unsettled_are_sent_again() -> None:
    """A 429 item is sent again alone; the items that succeeded are neither re-sent nor recounted.

    The reindex's own loop re-sent whole chunks and counted them twice; verify reported 429s as
    left to the stream (issue 10, case 6).
    """
    # given three documents, one of which is refused with 429 twice
    index = ScriptedIndex({"b": [429, 429]})
    # when they are applied
    result = _apply(index, ["a", "b", "c"])
    # then b was sent three times, a and c once, and each is counted once as written
    assert index.sent.count("a") == 1
    assert index.sent.count("c") == 1
    assert index.sent.count("b") == 3
    assert result.count(Settled.WRITTEN) == 3


def test_a_permanent_item_is_rejected_and_the_rest_written() -> None:
    """A 400 item is rejected with OpenSearch's words; the others are written."""
    # given a document OpenSearch refuses
    index = ScriptedIndex({"bad": [400]})
    # when it is applied with a good one
    result = _apply(index, ["good", "bad"])
    # then one is written and one rejected, with the reason
    assert result.status(("idx", "good")) is Settled.WRITTEN
    assert result.status(("idx", "bad")) is Settled.REJECTED
    assert "400" in result.outcomes[("idx", "bad")].reason


def test_a_write_block_is_retried_then_reported_not_rejected() -> None:
    """A 403 cluster_block item is an outage: retried, then FAILED (reported), never REJECTED."""
    # given an index that answers 403 to every attempt
    index = ScriptedIndex({"x": [403] * 10})
    # when the item is applied
    result = _apply(index, ["x"])
    # then it failed (to be retried later), and was tried as often as the policy allows
    assert result.status(("idx", "x")) is Settled.FAILED
    assert index.sent.count("x") == FAST.max_attempts


def test_unknown_order_re_reads_and_writes_what_the_read_found() -> None:
    """A planner that cannot order its write gets the item read again and plans with it."""
    # given a planner that asks for a re-read the first time
    index = ScriptedIndex({})
    reads: list[DocumentRef] = []

    def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Any:
        if read is None:
            return Verdict.REREAD
        return DocumentWrite(ref, WriteKind.INDEX, dict(read.item or {}), target.document)

    def reread(refs: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        reads.extend(refs)
        from syncer.versions import read_version

        return {ref: ReadState({"fresh": True}, read_version(1.0, 2.0)) for ref in refs}

    guard = Downstream("opensearch", FAST)
    # when it is applied
    result = apply_writes(index, guard, [("idx", "k")], plan, OpenSearchConfig(), reread=reread)
    # then the item was read once and its fresh state written
    assert reads == [("idx", "k")]
    assert result.status(("idx", "k")) is Settled.WRITTEN
    assert index.documents["k"] == {"fresh": True}


def test_nothing_to_write_sends_nothing() -> None:
    """No refs: no request at all, not even the reindex alias check (issue 11, case 12)."""
    # given an index that would record any request
    index = ScriptedIndex({})
    # when nothing is applied
    result = _apply(index, [], optional_aliases=frozenset({"idx-reindexing"}))
    # then nothing was sent
    assert index.sent == []
    assert result.outcomes == {}
