"""Dead letters are JSON lines holding the record, its table and the error, within a size bound."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from syncer.core import jsoncodec
from syncer.sinks.deadletter import DeadLetter, FileDeadLetters, encode_entry

TIME_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _letter(record: Any, sequence: str | None = "800000000000000000000000000020") -> DeadLetter:
    return DeadLetter(
        record=record,
        table="catalog",
        error_class="PoisonRecordError",
        message="unknown attribute type 'X' at NewImage.weight",
        sequence_text=sequence,
    )


@pytest.fixture
def raw_record(load_event) -> dict[str, Any]:
    """The record with an unknown attribute type from the malformed batch."""
    record: dict[str, Any] = copy.deepcopy(load_event("malformed.json")["Records"][1])
    return record


def test_file_gets_one_json_line_per_letter(tmp_path: Path, raw_record: dict[str, Any]) -> None:
    """Writing two letters appends two lines, each a complete JSON entry."""
    # given a file sink in a directory that does not exist yet
    sink = FileDeadLetters(tmp_path / "letters" / "deadletter.jsonl")
    # when two letters are written
    sink.write([_letter(raw_record), _letter(raw_record, sequence=None)])
    # then the file has two JSON lines
    lines = sink.path.read_bytes().splitlines()
    assert len(lines) == 2
    assert [jsoncodec.loads(line)["sequence_number"] for line in lines] == [
        "800000000000000000000000000020",
        None,
    ]


def test_entry_holds_record_table_error_and_time(
    tmp_path: Path, raw_record: dict[str, Any]
) -> None:
    """A file entry carries the whole record, the table, the error class and message, and the time."""
    # given a file sink
    sink = FileDeadLetters(tmp_path / "deadletter.jsonl")
    # when one letter is written
    sink.write([_letter(raw_record)])
    # then its entry has every field
    entry = jsoncodec.loads(sink.path.read_bytes())
    assert entry["record"] == raw_record
    assert entry["table"] == "catalog"
    assert entry["error"] == {
        "class": "PoisonRecordError",
        "message": "unknown attribute type 'X' at NewImage.weight",
    }
    assert TIME_FORMAT.fullmatch(entry["time"])
    assert "truncated" not in entry


def test_writes_append_to_the_file(tmp_path: Path, raw_record: dict[str, Any]) -> None:
    """A second write adds lines after the first instead of replacing them."""
    # given a file that already holds a letter
    sink = FileDeadLetters(tmp_path / "deadletter.jsonl")
    sink.write([_letter(raw_record)])
    # when another letter is written by a new sink on the same file
    FileDeadLetters(sink.path).write(
        [_letter(raw_record, sequence="800000000000000000000000000030")]
    )
    # then both lines are there, oldest first
    lines = sink.path.read_bytes().splitlines()
    assert [jsoncodec.loads(line)["sequence_number"] for line in lines] == [
        "800000000000000000000000000020",
        "800000000000000000000000000030",
    ]


def test_writing_no_letters_creates_no_file(tmp_path: Path) -> None:
    """An empty write touches nothing."""
    # given a file sink
    sink = FileDeadLetters(tmp_path / "deadletter.jsonl")
    # when nothing is written
    sink.write([])
    # then no file exists
    assert not sink.path.exists()


def test_entry_within_the_limit_is_untouched(raw_record: dict[str, Any]) -> None:
    """An entry that fits max_bytes keeps its whole record and has no truncated field."""
    # given a letter and a generous limit
    letter = _letter(raw_record)
    # when it is encoded
    entry = jsoncodec.loads(encode_entry(letter, max_bytes=100_000))
    # then nothing is dropped
    assert entry["record"] == raw_record
    assert "truncated" not in entry


def test_oversized_entry_drops_the_images_and_says_so(raw_record: dict[str, Any]) -> None:
    """Over max_bytes the images are dropped, keys and sequence kept, and 'truncated' set."""
    # given a letter whose record has a 10 kB image
    raw_record["dynamodb"]["NewImage"]["description"] = {"S": "x" * 10_000}
    letter = _letter(raw_record)
    full_size = len(encode_entry(letter))
    # when it is encoded with a 2 kB limit
    data = encode_entry(letter, max_bytes=2_000)
    # then it fits, the images are gone, the rest of the record is kept and truncated explains
    assert len(data) <= 2_000
    entry = jsoncodec.loads(data)
    body = entry["record"]["dynamodb"]
    assert "NewImage" not in body
    assert "OldImage" not in body
    assert body["Keys"] == raw_record["dynamodb"]["Keys"]
    assert body["SequenceNumber"] == raw_record["dynamodb"]["SequenceNumber"]
    assert entry["record"]["eventSourceARN"] == raw_record["eventSourceARN"]
    assert entry["truncated"]["bytes"] == full_size
    assert "images dropped" in entry["truncated"]["reason"]
    assert entry["error"]["class"] == "PoisonRecordError"


def test_entry_still_too_large_without_images_drops_the_record(raw_record: dict[str, Any]) -> None:
    """If even the slim record is too large, the record is replaced by a marker."""
    # given a letter whose keys alone are 5 kB
    raw_record["dynamodb"]["Keys"]["pk"] = {"S": "k" * 5_000}
    letter = _letter(raw_record)
    # when it is encoded with a 2 kB limit
    entry = jsoncodec.loads(encode_entry(letter, max_bytes=2_000))
    # then the record is only a marker, and the table and error survive
    assert entry["record"] == {"truncated": True}
    assert entry["table"] == "catalog"
    assert "truncated" in entry


def test_record_that_is_not_an_object_is_kept_when_small() -> None:
    """A rejected record that is not even an object is stored as it came."""
    # given a letter for a record that is a bare string
    letter = _letter("garbage", sequence=None)
    # when it is encoded
    entry = jsoncodec.loads(encode_entry(letter, max_bytes=10_000))
    # then the string is the record
    assert entry["record"] == "garbage"
