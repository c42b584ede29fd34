"""_bulk bodies are cut by count and bytes, and every bulk item's result is classified."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.config import ResilienceConfig
from syncer.core import jsoncodec
from syncer.core.attributes import decode_number
from syncer.errors import SearchUnavailableError
from syncer.sinks.resilience import Downstream
from syncer.sinks.search import (
    DocumentWrite,
    ItemResult,
    ItemStatus,
    WriteKind,
    bulk_chunks,
    item_result,
    scroll_pages,
)


def _write(number: int, padding: int = 0) -> DocumentWrite:
    return DocumentWrite(
        ref=("catalog", f"p-{number}|v1"),
        kind=WriteKind.INDEX,
        body={"name": f"item {number}", "pad": "x" * padding},
        expected=None,
    )


def _entry_bytes(write: DocumentWrite) -> int:
    ((_, body),) = bulk_chunks([write], max_actions=1, max_bytes=10**9)
    return len(body)


def _ids_in_body(body: bytes) -> list[str]:
    lines = body.split(b"\n")
    assert lines[-1] == b""  # NDJSON: every line, the last one included, ends with a newline
    actions = [jsoncodec.loads(line) for line in lines[:-1:2]]
    return [action["create"]["_id"] for action in actions]


def test_chunks_are_cut_by_count() -> None:
    """With a count limit of 2, five writes go out as 2, 2 and 1."""
    # given five small writes
    writes = [_write(n) for n in range(5)]
    # when they are chunked with at most two actions per request
    chunks = list(bulk_chunks(writes, max_actions=2, max_bytes=10**6))
    # then the chunks hold 2, 2 and 1 writes
    assert [len(chunk) for chunk, _ in chunks] == [2, 2, 1]


def test_chunks_are_cut_by_bytes() -> None:
    """A byte limit that fits two entries cuts four equal writes into two requests."""
    # given four writes of equal size
    writes = [_write(n, padding=100) for n in range(4)]
    size = _entry_bytes(writes[0])
    # when they are chunked with room for two entries but not three
    chunks = list(bulk_chunks(writes, max_actions=100, max_bytes=2 * size + size // 2))
    # then each request holds two writes and stays within the limit
    assert [len(chunk) for chunk, _ in chunks] == [2, 2]
    assert all(len(body) <= 2 * size + size // 2 for _, body in chunks)


def test_write_larger_than_the_byte_limit_goes_alone() -> None:
    """A single entry over the byte limit is still sent, alone in its request."""
    # given a large write between two small ones
    writes = [_write(0), _write(1, padding=5000), _write(2)]
    # when they are chunked with a limit smaller than the large entry
    chunks = list(bulk_chunks(writes, max_actions=100, max_bytes=1000))
    # then the large write has a request of its own
    assert [[w.ref[1] for w in chunk] for chunk, _ in chunks] == [
        ["p-0|v1"],
        ["p-1|v1"],
        ["p-2|v1"],
    ]


def test_no_writes_make_no_requests() -> None:
    """An empty list of writes yields no request body."""
    # given no writes
    # when they are chunked
    # then nothing is yielded
    assert list(bulk_chunks([], max_actions=10, max_bytes=1000)) == []


def test_body_matches_the_writes_of_its_chunk() -> None:
    """Each body holds an action and a source line per write, in the chunk's order."""
    # given three writes in one chunk
    writes = [_write(n) for n in range(3)]
    # when they are chunked
    ((chunk, body),) = bulk_chunks(writes, max_actions=10, max_bytes=10**6)
    # then the body names the same documents in the same order
    assert _ids_in_body(body) == [w.ref[1] for w in chunk]
    assert jsoncodec.loads(body.split(b"\n")[1]) == {"name": "item 0", "pad": ""}


def test_body_keeps_big_numbers_exact() -> None:
    """A 38-digit number in a document is written to the bulk body digit for digit."""
    # given a document with a 38-digit integer
    digits = "98765432109876543210987654321098765432"
    write = DocumentWrite(
        ("catalog", "p-1"), WriteKind.INDEX, {"serial": decode_number(digits)}, None
    )
    # when it is chunked
    ((_, body),) = bulk_chunks([write], max_actions=10, max_bytes=10**6)
    # then the digits are in the body
    assert b'{"serial":' + digits.encode() + b"}" in body


@settings(max_examples=100, deadline=None)
@given(
    paddings=st.lists(st.integers(min_value=0, max_value=400), max_size=30),
    max_actions=st.integers(min_value=1, max_value=7),
    max_bytes=st.integers(min_value=50, max_value=1500),
)
def test_every_write_appears_once_in_order(
    paddings: list[int], max_actions: int, max_bytes: int
) -> None:
    """Whatever the limits, chunks hold every write exactly once, in order, within the limits."""
    # given writes of assorted sizes
    writes = [_write(n, padding) for n, padding in enumerate(paddings)]
    # when they are chunked
    chunks = list(bulk_chunks(writes, max_actions=max_actions, max_bytes=max_bytes))
    # then concatenating the chunks gives the writes back, and each chunk respects the limits
    assert [w for chunk, _ in chunks for w in chunk] == writes
    for chunk, body in chunks:
        assert 1 <= len(chunk) <= max_actions
        assert len(body) <= max_bytes or len(chunk) == 1
        assert _ids_in_body(body) == [w.ref[1] for w in chunk]


@pytest.mark.parametrize(
    "item",
    [
        {"create": {"_id": "p-1", "status": 201, "result": "created"}},
        {"index": {"_id": "p-1", "status": 200, "result": "updated"}},
    ],
    ids=["created", "updated"],
)
def test_2xx_item_is_ok(item: dict[str, object]) -> None:
    """A bulk item with a 2xx status succeeded."""
    # given a successful bulk item
    # when it is classified
    # then it is OK
    assert item_result(item) == ItemResult(ItemStatus.OK)


def test_409_item_is_a_conflict() -> None:
    """A version conflict is a conflict, to be re-read and decided again."""
    # given a version conflict item
    item = {
        "create": {
            "_id": "p-1",
            "status": 409,
            "error": {
                "type": "version_conflict_engine_exception",
                "reason": "document already exists",
            },
        }
    }
    # when it is classified
    result = item_result(item)
    # then it is a conflict carrying OpenSearch's words
    assert result.status is ItemStatus.CONFLICT
    assert "version_conflict_engine_exception" in result.reason


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, "es_rejected_execution_exception"),
        (500, "internal_server_error"),
        (503, "unavailable_shards_exception"),
        (403, "cluster_block_exception"),
        (401, "security_exception"),
    ],
)
def test_429_and_5xx_items_are_transient(status: int, kind: str) -> None:
    """Rejected-execution, server-side, write-block and security item errors are retried.

    A 403 cluster_block_exception (index.blocks.write, read_only) or a 401/403 from the
    security plugin is an outage of the index, not a bad document: it failed on the old code,
    which dead-lettered such items.
    """
    # given an item with a 429 or 5xx status
    item = {"index": {"_id": "p-1", "status": status, "error": {"type": kind, "reason": "busy"}}}
    # when it is classified
    result = item_result(item)
    # then it is transient
    assert result.status is ItemStatus.TRANSIENT
    assert result.reason.startswith(str(status))


def test_mapper_parsing_exception_is_permanent() -> None:
    """A 400 mapper_parsing_exception can never succeed, so the item is permanent."""
    # given a mapping error
    item = {
        "index": {
            "_id": "p-1",
            "status": 400,
            "error": {
                "type": "mapper_parsing_exception",
                "reason": "failed to parse field [price] of type [float]",
            },
        }
    }
    # when it is classified
    result = item_result(item)
    # then it is permanent and keeps the reason
    assert result.status is ItemStatus.PERMANENT
    assert (
        result.reason
        == "400 mapper_parsing_exception: failed to parse field [price] of type [float]"
    )


def test_missing_index_item_is_transient_with_a_hint() -> None:
    """A 404 index_not_found item is retried and tells the operator to run setup."""
    # given an item whose alias is missing
    item = {
        "create": {
            "_id": "p-1",
            "status": 404,
            "error": {"type": "index_not_found_exception", "reason": "no such index [catalog]"},
        }
    }
    # when it is classified
    result = item_result(item)
    # then it is transient and hints at `syncer setup`
    assert result.status is ItemStatus.TRANSIENT
    assert "syncer setup" in result.reason


def test_item_without_status_is_transient() -> None:
    """An item with no status is treated as a server error and retried, never as success."""
    # given an item without a status
    # when it is classified
    # then it is transient
    assert item_result({"index": {"_id": "p-1"}}).status is ItemStatus.TRANSIENT


class _ShardFailingScroll:
    """A client whose scroll's second page lost one of two shards, as OpenSearch reports it."""

    def __init__(self) -> None:
        self.cleared: list[object] = []

    def search(self, **_: object) -> dict[str, object]:
        shards = {"total": 2, "successful": 2, "failed": 0}
        return {"_scroll_id": "s1", "_shards": shards, "hits": {"hits": [{"_id": "a"}]}}

    def scroll(self, **_: object) -> dict[str, object]:
        failure = {"shard": 1, "reason": {"type": "node_closed", "reason": "node left"}}
        shards = {"total": 2, "successful": 1, "failed": 1, "failures": [failure]}
        return {"_scroll_id": "s1", "_shards": shards, "hits": {"hits": []}}

    def clear_scroll(self, **kwargs: object) -> None:
        self.cleared.append(kwargs)


def test_a_scroll_with_a_failed_shard_fails_loudly() -> None:
    """A scroll page missing a shard's hits raises, instead of ending the scroll short.

    On the old code the scroll ended there and verify's ghost pass checked fewer documents.
    """
    # given a scroll whose second answer counts a failed shard
    client = _ShardFailingScroll()
    guard = Downstream("opensearch", ResilienceConfig(max_attempts=1))
    pages = scroll_pages(client, guard, "catalog", {"query": {"match_all": {}}}, 10)
    # when it is read
    assert next(pages) == [{"_id": "a"}]
    # then the failed shard is an error naming it, and the scroll is still cleared
    with pytest.raises(SearchUnavailableError, match="1 of 2 shards failed \\(node left\\)"):
        next(pages)
    assert len(client.cleared) == 1
