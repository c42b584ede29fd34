"""Export lines that cannot be loaded, and a retried file's own writes (issue 24, defects 4 and
10), without servers: the decoding's classification and ``OwnWrites`` over in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from syncer.commands.exports import ALREADY_HELD, OwnWrites, decode_page
from syncer.config import TableConfig
from syncer.core.documents import DocumentRef, ReadState, TargetState, indexed_document
from syncer.core.exports import holds_this_state, parse_summary
from syncer.core.plan import document_body
from syncer.core.versions import read_version

TABLE = TableConfig(name="t", index="t")
KEY_TYPES = {"pk": "S", "sk": "S"}
SUMMARY = parse_summary(
    json.dumps(
        {
            "exportTime": "2020-11-04T07:28:34.028Z",
            "s3Bucket": "b",
            "manifestFilesS3Key": "k",
            "itemCount": 0,
        }
    ).encode()
)


def _line(item: Mapping[str, Any]) -> bytes:
    return json.dumps({"Item": item}).encode()


def test_each_bad_line_is_a_letter_and_those_with_a_key_are_named() -> None:
    """A good line decodes; an item that cannot be decoded keeps its id; no key: unkeyed."""
    good = _line({"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "5"}})
    undecodable = _line({"pk": {"S": "b"}, "sk": {"S": "1"}, "n": {"N": "not a number"}})
    no_key = _line({"sk": {"S": "1"}})
    page = decode_page(TABLE, KEY_TYPES, SUMMARY, [good, undecodable, no_key, b"{oops"], "f")
    assert [doc_id for doc_id, _, _ in page.decoded] == ["a|1"]
    assert page.undecoded_ids == ["b|1"]
    assert len(page.unkeyed) == 2
    assert len(page.letters) == 3


VERSION = read_version(1000.0, 1120.0)
ITEM = {"pk": "a", "sk": "1", "price": 5}


class _Admin:
    def __init__(self, sources: Mapping[str, Mapping[str, Any]]) -> None:
        self.sources = sources
        self.asked: list[list[str]] = []

    def documents(self, index: str, ids: Sequence[str], *, source: bool = True) -> dict[str, Any]:
        self.asked.append(list(ids))
        return {
            i: {
                "_id": i,
                "found": True,
                "_source": self.sources[i],
                "_seq_no": 1,
                "_primary_term": 1,
            }
            for i in ids
            if i in self.sources
        }


class _Sinks:
    def __init__(self, admin: _Admin) -> None:
        self.admin = admin


def _indexed(body: Mapping[str, Any]) -> Any:
    return indexed_document(json.loads(json.dumps(body)), 1, 1)


def _own(sources: Mapping[str, Mapping[str, Any]]) -> tuple[OwnWrites, _Admin, list[DocumentRef]]:
    admin = _Admin(sources)
    table_reads: list[DocumentRef] = []

    def table_reread(refs: Sequence[DocumentRef]) -> Mapping[DocumentRef, ReadState | str]:
        table_reads.extend(refs)
        return {ref: ReadState(None, read_version(2000.0, 2001.0)) for ref in refs}

    return OwnWrites(_Sinks(admin), table_reread), admin, table_reads  # type: ignore[arg-type]


def _holds(indexed: Any) -> bool:
    return holds_this_state(indexed, VERSION, ITEM, TABLE)


def test_a_document_the_file_wrote_itself_is_held_without_reading_the_table() -> None:
    """Same interval, same content (read whole from the index): ALREADY_HELD."""
    body = document_body(ITEM, TABLE, VERSION)
    own, admin, table_reads = _own({"a|1": body})
    ref = ("idx", "a|1")
    own.note(ref, TargetState("idx-1", _indexed({"_syncer": body["_syncer"]})), VERSION, _holds)
    assert own.reread([ref]) == {ref: ALREADY_HELD}
    assert admin.asked == [["a|1"]]
    assert table_reads == []


def test_the_same_interval_with_other_content_is_read_from_the_table() -> None:
    """Another content under the same interval: the table decides, as before."""
    other = document_body({**ITEM, "price": 6}, TABLE, VERSION)
    own, _, table_reads = _own({"a|1": other})
    ref = ("idx", "a|1")
    own.note(ref, TargetState("idx-1", _indexed({"_syncer": other["_syncer"]})), VERSION, _holds)
    assert own.reread([ref])[ref] is not ALREADY_HELD
    assert table_reads == [ref]


def test_another_interval_never_reads_the_index_whole() -> None:
    """An ordinary unknown order: no extra _mget, the table is read."""
    older = document_body(ITEM, TABLE, read_version(1000.0, 1121.0))
    own, admin, table_reads = _own({"a|1": older})
    ref = ("idx", "a|1")
    own.note(ref, TargetState("idx-1", _indexed({"_syncer": older["_syncer"]})), VERSION, _holds)
    own.reread([ref])
    assert admin.asked == []
    assert table_reads == [ref]
