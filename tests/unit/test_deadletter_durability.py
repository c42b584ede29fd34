"""Dead letters read back exactly, survive a full disk and a concurrent redrive, and SQS refusals are typed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.commands.redrive import redrive
from syncer.config import Config, parse_config
from syncer.errors import DownstreamUnavailableError
from syncer.sinks.build import build_sinks
from syncer.sinks.deadletter import DeadLetter, FileDeadLetters, SqsDeadLetters, entry_record

REPO_ROOT = Path(__file__).resolve().parents[2]


def _letter(record: Any, sequence: str | None = "100") -> DeadLetter:
    return DeadLetter(record, "catalog", "PoisonRecordError", "bad record", sequence)


def _stream_record(pk: str, sequence: str = "100") -> dict[str, Any]:
    return {
        "eventName": "INSERT",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/x",
        "dynamodb": {"Keys": {"pk": {"S": pk}}, "SequenceNumber": sequence},
    }


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the file parsed by orjson (raises on any line orjson cannot read)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _config(tmp_path: Path) -> Config:
    return parse_config(
        {
            "deadletter": {"file": str(tmp_path / "deadletter.jsonl")},
            "tables": [{"name": "catalog", "index": "catalog"}],
        },
        environ={},
    )


def test_lone_surrogate_record_reads_back_exactly(tmp_path: Path) -> None:
    """A record holding a lone surrogate is stored so orjson reads the entry and the record is exact."""
    # given a record whose key is a lone surrogate, as a hand-made event can carry
    record = _stream_record("x\udfff")
    sink = FileDeadLetters(tmp_path / "deadletter.jsonl")
    # when it is dead-lettered
    sink.write([_letter(record)])
    # then orjson reads the line, and the record comes back equal to the original
    (entry,) = _lines(sink.path)
    assert entry["sequence_number"] == "100"
    assert entry_record(entry) == record


def test_integer_beyond_64_bits_reads_back_exactly(tmp_path: Path) -> None:
    """A record holding an integer orjson cannot write is stored losslessly too."""
    # given a record with a 30-digit integer (from a hand-made event parsed by the stdlib)
    record = {"dynamodb": {"SequenceNumber": "1", "odd": 123456789012345678901234567890}}
    sink = FileDeadLetters(tmp_path / "deadletter.jsonl")
    # when it is dead-lettered
    sink.write([_letter(record)])
    # then the integer comes back with every digit
    (entry,) = _lines(sink.path)
    assert entry_record(entry) == record


TORN_WRITE = textwrap.dedent(
    """
    import os, resource, signal, sys
    from syncer.sinks.deadletter import DeadLetter, FileDeadLetters

    def letter(n):
        return DeadLetter({"n": n, "pad": "p" * 300}, "catalog", "E", "m", str(n))

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write and EFBIG, not a kill
    sink = FileDeadLetters(sys.argv[1])
    sink.write([letter(1)])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(sys.argv[1]) + 100, hard))
    try:
        sink.write([letter(2), letter(3)])
    except Exception as error:
        print("first attempt failed:", type(error).__name__, type(error).__mro__[1].__name__)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    sink.write([letter(2), letter(3)])  # the retry, once there is room again
    """
)


def test_write_on_a_full_disk_leaves_no_torn_line(tmp_path: Path) -> None:
    """A write cut short by a file size limit is taken back, so the retry's entries read whole."""
    # given a process whose file size limit stops a write part way, then is lifted
    path = tmp_path / "deadletter.jsonl"
    # when it writes one letter, fails writing two more, and retries them
    done = subprocess.run(
        [sys.executable, "-c", TORN_WRITE, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # then the failure was real and typed as transient, and the file holds exactly the three letters, each readable
    assert "first attempt failed: DeadLetterUnavailableError DownstreamUnavailableError" in (
        done.stdout
    )
    assert [entry["record"]["n"] for entry in _lines(path)] == [1, 2, 3]


def test_entry_after_a_torn_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    """A torn tail left by a crashed writer stays its own line; the next entry is not glued to it."""
    # given a file ending in half an entry, as a writer killed mid-write leaves it
    path = tmp_path / "deadletter.jsonl"
    path.write_bytes(b'{"time":"2026-11-29T00:00:00Z","table":"cat')
    # when a letter is written
    FileDeadLetters(path).write([_letter({"n": 1})])
    # then the letter is a whole line of its own after the torn one
    torn, letter = path.read_bytes().splitlines()
    assert torn == b'{"time":"2026-11-29T00:00:00Z","table":"cat'
    assert orjson.loads(letter)["record"] == {"n": 1}


def test_redrive_keeps_an_unreadable_line_as_it_was(tmp_path: Path) -> None:
    """Redrive never replaces an unreadable entry by a placeholder: the bytes stay, and it is counted."""
    # given a dead-letter file with a torn line and an entry that is not a stream record
    config = _config(tmp_path)
    path = Path(str(config.deadletter.file))
    garbage = b'{"time":"2026-11-29T00:00:00Z","record":{"dyn\n'
    path.write_bytes(garbage)
    FileDeadLetters(path).write([_letter("not a stream record", None)])
    before = path.read_bytes()
    # when it is redriven
    result = redrive(config, build_sinks(config, environ={}))
    # then both lines are still there byte for byte, and the result says so
    assert path.read_bytes() == before
    assert (result.entries, result.unreadable, result.not_redrivable) == (2, 1, 1)
    assert not result.clean


WRITER = textwrap.dedent(
    """
    import os, pathlib, sys, time
    from syncer.sinks.deadletter import DeadLetter, FileDeadLetters

    # A worker stalled between opening the file and writing (a slow disk, a preempted CPU):
    # every way of opening it pauses 5 ms before returning.
    def stalled(open_):
        def opened(*args, **kwargs):
            handle = open_(*args, **kwargs)
            time.sleep(0.005)
            return handle
        return opened

    os.open = stalled(os.open)
    pathlib.Path.open = stalled(pathlib.Path.open)
    sink = FileDeadLetters(sys.argv[1])
    for n in range(int(sys.argv[2])):
        sink.write([DeadLetter(f"w-{n}-{i}", None, "E", "x" * 500, None) for i in range(10)])
    """
)
WRITES = 200


def test_letters_written_during_a_redrive_are_never_lost(tmp_path: Path) -> None:
    """A worker appending while redrives run: every letter it wrote is in the file afterwards."""
    # given a worker process appending 200 writes of dead letters, each stalled after open
    config = _config(tmp_path)
    path = Path(str(config.deadletter.file))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(WRITES)], cwd=REPO_ROOT)
    sinks = build_sinks(config, environ={})
    redrives = 0
    try:
        # when the file is redriven again and again meanwhile
        while writer.poll() is None:
            redrive(config, sinks)
            redrives += 1
            time.sleep(0.002)
    finally:
        assert writer.wait(timeout=120) == 0
    # then every letter the worker wrote is in the file, each line readable
    records = {entry["record"] for entry in _lines(path)}
    expected = {f"w-{n}-{i}" for n in range(WRITES) for i in range(10)}
    assert expected - records == set()
    assert redrives > 5


def test_redrive_reads_the_file_in_bounded_memory(tmp_path: Path) -> None:
    """Redriving a 20 MB file holds a chunk of it in memory at a time, not the whole file."""
    # given a dead-letter file of 2,000 entries of 10 kB
    config = _config(tmp_path)
    path = Path(str(config.deadletter.file))
    FileDeadLetters(path).write([_letter(f"{n}:" + "y" * 10_000, None) for n in range(2_000)])
    sinks = build_sinks(config, environ={})
    # when it is redriven under tracemalloc
    tracemalloc.start()
    try:
        result = redrive(config, sinks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then every entry was seen, and the peak stayed far below the file's size
    assert result.entries == 2_000
    assert peak < 8_000_000, peak  # 4.3 MB measured; the old code: 62 MB


class _PartlyRefusingSqs:
    """An SQS client stand-in whose SendMessageBatch answer refuses the second entry."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "Successful": [{"Id": Entries[0]["Id"], "MessageId": "m-1"}],
            "Failed": [
                {"Id": e["Id"], "Code": "InternalError", "SenderFault": False, "Message": "busy"}
                for e in Entries[1:]
            ],
        }


def test_partial_sqs_failure_is_a_transient_downstream_error() -> None:
    """A batch SQS took only in part raises DeadLetterUnavailableError, a DownstreamUnavailableError."""
    # given an SQS answer with one entry refused
    sink = SqsDeadLetters(_PartlyRefusingSqs(), "https://sqs.example/123/dlq")
    # when two letters are written
    with pytest.raises(DownstreamUnavailableError) as refused:
        sink.write([_letter({"n": 1}), _letter({"n": 2})])
    # then the typed error names the count and SQS's reason
    assert type(refused.value).__name__ == "DeadLetterUnavailableError"
    assert "1 of 2" in str(refused.value)
    assert "InternalError" in str(refused.value)


def test_dead_letter_unavailable_is_transient() -> None:
    """A dead-letter destination that did not take every entry is a transient failure."""
    from syncer.errors import DeadLetterUnavailableError
    from syncer.sinks.resilience import ErrorKind, classify

    # given the sinks' typed error, when classified, then it is transient
    assert classify(DeadLetterUnavailableError("SQS refused 1 of 2")) is ErrorKind.TRANSIENT


def test_lone_surrogate_in_table_and_message_still_writes_a_readable_entry(tmp_path: Path) -> None:
    """Syncer's own texts quoting a lone surrogate are escaped visibly; the record stays exact."""
    # given a letter whose table name and reason both carry a lone surrogate
    record = _stream_record("x\udfff")
    letter = DeadLetter(record, "cat\udfff", "PoisonRecordError", "bad key 'x\udfff'", "100")
    sink = FileDeadLetters(tmp_path / "deadletter.jsonl")
    # when it is dead-lettered
    sink.write([letter])
    # then orjson reads the entry, the texts show the escape, and the record is exact
    (entry,) = _lines(sink.path)
    assert entry["table"] == "cat\\udfff"
    assert entry["error"]["message"] == "bad key 'x\\udfff'"
    assert entry_record(entry) == record
