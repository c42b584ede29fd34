"""Dead-letter destinations: a JSONL file or an SQS queue, one entry per rejected record."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from syncer.config import DeadLetterConfig
from syncer.core import jsoncodec
from syncer.errors import DeadLetterUnavailableError
from syncer.sinks.resilience import Deadline, Downstream

SQS_MAX_MESSAGE_BYTES = 262_144
SQS_BATCH = 10


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that can never succeed as it is, and why."""

    record: object
    table: str | None
    error_class: str
    message: str
    sequence_text: str | None

    def to_entry(self, now_s: float | None = None) -> dict[str, Any]:
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s or time.time())),
            "table": self.table,
            "sequence_number": self.sequence_text,
            "error": {"class": self.error_class, "message": self.message},
            "record": self.record,
        }


class DeadLetterSink(Protocol):
    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Make every letter durable, or raise."""


class GuardedDeadLetters:
    """A dead-letter sink whose writes go through its guard's retry and breaker."""

    __slots__ = ("guard", "sink")

    def __init__(self, sink: DeadLetterSink, guard: Downstream) -> None:
        self.sink = sink
        self.guard = guard

    def write(self, letters: Sequence[DeadLetter], deadline: Deadline | None = None) -> None:
        """Make every letter durable (retried by the guard), or raise."""
        self.guard.call_with_retry(self.sink.write, letters, deadline=deadline)


# An entry whose record orjson cannot write (a lone surrogate such as "\udfff", which a hand-made
# or corrupted event can hold, or an integer beyond 64 bits) keeps the record as JSON text in
# ``record_json`` instead: the stdlib writes it losslessly with ASCII escapes, and as a string
# inside the entry it is plain text to any JSON reader. ``entry_record`` gives it back.
RECORD_AS_TEXT = "record_json"


def _dumps(entry: Mapping[str, Any]) -> bytes:
    try:
        return jsoncodec.dumps(entry)
    except TypeError:
        pass
    # The other fields are syncer's own short texts (table, reason): should one quote such a
    # character, it is written as a visible \udfff escape.
    text_entry: dict[str, Any] = _escaped({k: v for k, v in entry.items() if k != "record"})
    text_entry[RECORD_AS_TEXT] = json.dumps(
        entry.get("record"), default=str, ensure_ascii=True, separators=(",", ":")
    )
    return jsoncodec.dumps(text_entry)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    return value


def entry_record(entry: Mapping[str, Any]) -> object:
    """The record of an entry as it was dead-lettered, whichever way it was stored."""
    if isinstance(entry.get(RECORD_AS_TEXT), str):
        return json.loads(entry[RECORD_AS_TEXT])
    return entry.get("record")


def encode_entry(letter: DeadLetter, max_bytes: int | None = None) -> bytes:
    """One JSON entry; past ``max_bytes`` the images are dropped and ``truncated`` says so."""
    entry = letter.to_entry()
    data = _dumps(entry)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    record = letter.record
    slim: object = {"unserialisable_or_too_large": True}
    if isinstance(record, Mapping):
        slim = {k: v for k, v in record.items() if k != "dynamodb"}
        body = record.get("dynamodb")
        if isinstance(body, Mapping):
            slim["dynamodb"] = {k: v for k, v in body.items() if k not in ("NewImage", "OldImage")}
    entry["record"] = slim
    entry["truncated"] = {
        "reason": f"entry exceeded {max_bytes} bytes; images dropped",
        "bytes": len(data),
    }
    data = _dumps(entry)
    if len(data) > max_bytes:
        entry["record"] = {"truncated": True}
        entry["error"]["message"] = entry["error"]["message"][:4000]
        data = _dumps(entry)
    return data


@contextmanager
def _writers_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock that appends and ``take_for_redrive`` share.

    It lives in its own file (``<name>.lock``), which nobody renames, so a writer never needs
    to find out whether the file it opened is still the one at ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def _append_locked(fd: int, payload: bytes) -> None:
    """Append whole lines at the end of ``fd``; on failure cut the file back to where it was."""
    start = os.fstat(fd).st_size
    if start and os.pread(fd, 1, start - 1) != b"\n":
        # A writer died mid-line: put the next entry on a fresh line, so the torn one stays
        # on its own (readers report it) instead of gluing onto this entry.
        payload = b"\n" + payload
    try:
        _write_all(fd, payload)
        os.fsync(fd)
    except OSError as error:
        # A full disk (ENOSPC, EFBIG) leaves part of the payload: take it back, so a retry
        # appends to a clean line end. The caller reports the records, never acknowledges.
        try:
            os.ftruncate(fd, start)
        except OSError as undo_error:
            error.add_note(f"cutting the partial write back to {start} bytes failed: {undo_error}")
        raise


# A full disk or a failing device may recover by the next attempt; a permission or a path
# that is a directory will not, and stays an OSError for the classifier to call fatal.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EAGAIN, errno.EINTR}
)


def locked_append(path: Path, payload: bytes) -> None:
    """Append ``payload`` (whole lines) under an exclusive lock, fsynced, or raise.

    Writers and ``take_for_redrive`` take one lock, so no letter lands in a file a redrive
    has taken: the writer that waited opens the fresh file. A full disk raises ``DeadLetterUnavailableError`` (transient); other ``OSError``s pass unchanged.
    """
    try:
        _locked_append(path, payload)
    except OSError as error:
        if error.errno in _TRANSIENT_ERRNOS:
            raise DeadLetterUnavailableError(f"dead-letter file {path}: {error}") from error
        raise


def _locked_append(path: Path, payload: bytes) -> None:
    with _writers_lock(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _append_locked(fd, payload)
        finally:
            os.close(fd)


def take_for_redrive(path: Path) -> Path | None:
    """Rename the dead-letter file away under the writers' lock; the new name, or None."""
    with _writers_lock(path):
        if not path.exists():
            return None
        taken = path.with_name(f"{path.name}.redriving-{time.time_ns()}")
        os.replace(path, taken)
        return taken


@dataclass(frozen=True, slots=True)
class FileLine:
    """One line of a dead-letter file: its bytes as stored, and the entry if it parses."""

    number: int
    data: bytes
    entry: dict[str, Any] | None
    error: str | None


def read_file_lines(path: Path) -> Iterator[FileLine]:
    """The non-blank lines of a JSONL dead-letter file, one at a time (bounded memory)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            data = line if line.endswith(b"\n") else line + b"\n"
            try:
                entry = jsoncodec.loads(line)
            except ValueError as error:
                yield FileLine(number, data, None, f"line {number}: {error}")
                continue
            if not isinstance(entry, dict):
                yield FileLine(number, data, None, f"line {number}: not a JSON object")
                continue
            yield FileLine(number, data, entry, None)


class FileDeadLetters:
    """Append entries to a JSONL file under a lock, and fsync before reporting success."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        locked_append(self.path, b"".join(encode_entry(letter) + b"\n" for letter in letters))


class SqsDeadLetters:
    """Send entries to an SQS queue; any entry SQS did not take makes the write fail."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        on_sent: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.on_sent = on_sent  # told the MessageIds SQS accepted (redrive stops at its own)

    def write(self, letters: Sequence[DeadLetter]) -> None:
        bodies = [encode_entry(letter, SQS_MAX_MESSAGE_BYTES - 1024).decode() for letter in letters]
        for chunk in _sqs_batches(bodies):
            response = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
            )
            if self.on_sent is not None:
                self.on_sent([ok["MessageId"] for ok in response.get("Successful") or []])
            failed = response.get("Failed") or []
            if failed:
                # The whole write is retried: entries SQS took are sent again (a duplicate dead
                # letter is harmless; a missing one is not).
                first = failed[0]
                raise DeadLetterUnavailableError(
                    f"SQS refused {len(failed)} of {len(chunk)} dead letter(s): "
                    f"{first.get('Code')}: {first.get('Message')}"
                )


def _sqs_batches(bodies: Sequence[str]) -> list[list[str]]:
    """Groups of at most 10 messages whose bodies together stay within SQS's batch size limit."""
    batches: list[list[str]] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if not batches or len(batches[-1]) >= SQS_BATCH or size + length > SQS_MAX_MESSAGE_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(body)
        size += length
    return batches


def make_sink(settings: DeadLetterConfig, aws_client: Callable[[str], Any]) -> DeadLetterSink:
    """The configured destination; ``aws_client(service)`` makes the SQS client."""
    if settings.sqs_queue_url:
        return SqsDeadLetters(aws_client("sqs"), settings.sqs_queue_url)
    assert settings.file is not None
    return FileDeadLetters(settings.file)
