"""apply_writes, the one bulk path: it retries only unsettled items and counts each ref once."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from syncer.config import OpenSearchConfig, ResilienceConfig
from syncer.core import jsoncodec
from syncer.core.documents import (
    DocumentRef,
    DocumentWrite,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.sinks.resilience import Downstream
from syncer.sinks.search import apply_writes

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
        from syncer.core.versions import read_version

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


class AliasedIndex(ScriptedIndex):
    """A ScriptedIndex behind aliases: ``idx`` always, ``idx-reindexing`` when ``reindexing``.

    Its ``HEAD`` waits (up to ``overlap_wait_s``) for an ``_mget`` to start, and records
    whether one did: a ``HEAD`` sent before the ``_mget`` rather than alongside it never sees one.
    """

    def __init__(self, statuses: Mapping[str, list[int]], reindexing: bool) -> None:
        super().__init__(statuses)
        self.reindexing = reindexing
        self.overlap_wait_s = 2.0
        self.mget_started = threading.Event()
        self.heads: list[tuple[str, bool]] = []  # (alias, an _mget was in flight)
        self.mget_ids: list[list[str]] = []
        self.indices = self  # client.indices.exists_alias

    def exists_alias(self, name: str, params: Mapping[str, Any]) -> bool:
        overlapped = self.mget_started.wait(self.overlap_wait_s)
        self.heads.append((name, overlapped))
        return name == "idx-reindexing" and self.reindexing

    def mget(self, body: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        self.mget_started.set()
        self.mget_ids.append([doc["_id"] for doc in body["docs"]])
        time.sleep(0.05)  # long enough for the HEAD to be answered while this runs
        answer = super().mget(body, params)
        self.mget_started.clear()
        return answer


def _apply_aliased(index: AliasedIndex, ids: Sequence[str]) -> Any:
    refs = [(alias, doc_id) for doc_id in ids for alias in ("idx", "idx-reindexing")]
    guard = Downstream("opensearch", FAST)
    optional = frozenset({"idx-reindexing"})
    return apply_writes(index, guard, refs, _plan, OpenSearchConfig(), optional_aliases=optional)


def test_the_reindex_alias_head_runs_alongside_the_mget() -> None:
    """The reindex-alias HEAD is in flight while the main alias's _mget runs (issue 15)."""
    # given an index with no reindex running
    index = AliasedIndex({}, reindexing=False)
    # when two documents are applied to the alias and its optional reindex alias
    result = _apply_aliased(index, ["a", "b"])
    # then the HEAD was answered while the _mget was in flight, in the one round there was
    assert index.heads == [("idx-reindexing", True)]
    # and the reindex refs were never read, only skipped, while the main refs were written
    assert index.mget_ids == [["a", "b"]]
    assert result.status(("idx-reindexing", "a")) is Settled.SKIPPED
    assert result.status(("idx", "a")) is Settled.WRITTEN
    assert result.status(("idx", "b")) is Settled.WRITTEN


def test_a_running_reindex_gets_its_own_mget_and_every_round_asks_again() -> None:
    """While the reindex alias exists its refs are read and written; each round asks afresh."""
    # given a reindex running and one item refused once with 429
    index = AliasedIndex({"b": [429]}, reindexing=True)
    index.overlap_wait_s = 0.5  # the reindex refs' own _mget follows the HEAD's answer
    # when two documents are applied
    result = _apply_aliased(index, ["a", "b"])
    # then the first round read the main ids, then the reindex ids; the second round asked again
    assert index.mget_ids[:2] == [["a", "b"], ["a", "b"]]
    assert [alias for alias, _ in index.heads] == ["idx-reindexing", "idx-reindexing"]
    # and every ref is written (the fake has one concrete index: one write serves both aliases)
    assert all(status is Settled.WRITTEN for status in (result.status(r) for r in result.outcomes))
    assert len(result.outcomes) == 4


def test_a_failed_head_fails_the_round_and_is_retried() -> None:
    """A HEAD that fails fails its round like the _mget would; the next round asks again."""
    # given an index whose first HEAD fails with a connection error
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

    index = AliasedIndex({}, reindexing=False)
    index.overlap_wait_s = 0.5
    answers = iter([OpenSearchConnectionError("N/A", "refused", Exception("refused"))])
    asked = index.exists_alias

    def flaky(name: str, params: Mapping[str, Any]) -> bool:
        error = next(answers, None)
        if error is not None:
            raise error
        return asked(name, params)

    index.exists_alias = flaky  # type: ignore[method-assign]
    # when a document is applied
    result = _apply_aliased(index, ["a"])
    # then the second round asked again and the document was written once
    assert len(index.heads) == 1
    assert index.sent == ["a"]
    assert result.status(("idx", "a")) is Settled.WRITTEN
    assert result.status(("idx-reindexing", "a")) is Settled.SKIPPED
