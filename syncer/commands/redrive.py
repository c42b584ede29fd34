"""Show dead-lettered records and send them through the pipeline again (``syncer deadletter``).

Redriving applies the ordering rules like any delivery: a record older than the indexed state
changes nothing in the index, and its cache keys are invalidated once more. Nothing is ever
destroyed: an entry whose records fail again is kept as it was stored (byte for byte in a
file), an unreadable entry is kept and reported, and a record that is rejected again gets a new
entry with the new reason, written by the pipeline, before its old entry is removed.

The file is read in chunks of ``REDRIVE_BATCH`` lines and an SQS queue in receives of the same
size, so memory stays bounded by the chunk, not by the number of dead letters.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from syncer.config import Config
from syncer.core import jsoncodec
from syncer.core.kinesis import is_kinesis_record, sequence_text_of
from syncer.errors import SyncerError
from syncer.pipeline import process_batch
from syncer.sinks.deadletter import (
    DeadLetter,
    DeadLetterSink,
    GuardedDeadLetters,
    SqsDeadLetters,
    entry_record,
    locked_append,
    read_file_lines,
    take_for_redrive,
)
from syncer.sinks.ports import DeadLetterStore, Sinks
from syncer.sinks.resilience import Deadline

REDRIVE_BATCH = 100
# Long enough for one chunk through the pipeline with its retries; a message that failed again
# becomes visible after it, for the next redrive.
REDRIVE_VISIBILITY_S = 120

_T = TypeVar("_T")


class RedriveBusyError(SyncerError):
    """Another redrive of the same dead-letter file is running."""


class Fate(Enum):
    """What a redrive did with one entry."""

    REDRIVEN = "redriven"
    REJECTED_AGAIN = "rejected again"  # a new entry with the new reason replaces it
    FAILED_AGAIN = "failed again"  # kept, to be redriven later
    NOT_REDRIVABLE = "not a stream record"  # kept
    UNREADABLE = "unreadable"  # kept as stored


@dataclass
class RedriveResult:
    entries: int = 0
    redriven: int = 0
    rejected_again: int = 0
    failed_again: int = 0
    not_redrivable: int = 0
    unreadable: int = 0
    not_deleted: int = 0  # SQS: redriven, but the old message could not be deleted

    def count(self, fates: Iterable[Fate]) -> None:
        for fate in fates:
            self.entries += 1
            if fate is Fate.REDRIVEN:
                self.redriven += 1
            elif fate is Fate.REJECTED_AGAIN:
                self.rejected_again += 1
            elif fate is Fate.FAILED_AGAIN:
                self.failed_again += 1
            elif fate is Fate.NOT_REDRIVABLE:
                self.not_redrivable += 1
            else:
                self.unreadable += 1

    @property
    def clean(self) -> bool:
        """True when every entry was redriven (or was never a stream record)."""
        return not (self.rejected_again or self.failed_again or self.unreadable or self.not_deleted)


def parse_entry(data: bytes | str) -> dict[str, Any] | None:
    """An entry from its JSON text, or None when it is unreadable.

    orjson first; the stdlib reads what orjson refuses but older syncers wrote (lone surrogate
    escapes, integers beyond 64 bits), exactly.
    """
    try:
        entry = jsoncodec.loads(data)
    except ValueError:
        try:
            entry = json.loads(data)
        except ValueError:
            return None
    return entry if isinstance(entry, dict) else None


def _stream_record(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The entry's stream record, or None when it holds none (or it cannot be read)."""
    if entry is None:
        return None
    try:
        record = entry_record(entry)
    except ValueError:
        return None
    if isinstance(record, Mapping) and (
        isinstance(record.get("dynamodb"), Mapping) or is_kinesis_record(record)
    ):
        return record
    return None


def _sequence_text(record: Mapping[str, Any]) -> str:
    """The record's sequence number as its source spelled it: Lambda's itemIdentifier."""
    if is_kinesis_record(record):
        return sequence_text_of(record) or ""
    return str(record["dynamodb"].get("SequenceNumber") or "")


def _sequence(record: Mapping[str, Any]) -> int:
    """For the order of the batch only: Kinesis changes are ordered by their time anyway."""
    text = _sequence_text(record)
    return int(text) if text.isascii() and text.isdigit() else -1


RecordIdentity = tuple[str, str]  # (the stream's ARN, the record's SequenceNumber)


def record_identity(record: Mapping[str, Any]) -> RecordIdentity:
    """Which stream record this is, whatever object carries it: its stream and sequence number.

    A Lambda record names no shard; sequence numbers do not repeat within a stream, so two
    records with the same pair are the same change delivered twice (and share one fate).
    """
    if is_kinesis_record(record):
        return (str(record.get("eventSourceARN") or ""), sequence_text_of(record) or "")
    body = record.get("dynamodb")
    sequence = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return (str(record.get("eventSourceARN") or ""), str(sequence or ""))


class _RecordingLetters:
    """Writes letters through ``inner`` and remembers the identity of each record it wrote."""

    def __init__(self, inner: DeadLetterStore) -> None:
        self.inner = inner
        self.written: set[RecordIdentity] = set()

    def write(self, letters: Sequence[DeadLetter], deadline: Deadline | None = None) -> None:
        self.inner.write(letters, deadline)
        self.written.update(
            record_identity(letter.record)
            for letter in letters
            if isinstance(letter.record, Mapping)
        )


def redrive_entries(
    entries: Sequence[Mapping[str, Any] | None],
    config: Config,
    sinks: Sinks,
    deadletters: DeadLetterSink | None = None,
) -> list[Fate]:
    """Process the stream records of ``entries`` in sequence order; the fate of each entry.

    ``None`` stands for an unreadable entry. A record the pipeline dead-letters again is told
    apart from one it indexed by watching the dead letters written, by record identity (stream
    and sequence number), not by which object carried it.
    """
    fates = [Fate.UNREADABLE if entry is None else Fate.NOT_REDRIVABLE for entry in entries]
    found = [(i, r) for i, r in enumerate(map(_stream_record, entries)) if r is not None]
    if not found:
        return fates
    found.sort(key=lambda pair: _sequence(pair[1]))
    letters = sinks.letters
    if deadletters is not None:
        letters = GuardedDeadLetters(deadletters, sinks.deadletter_guard)
    recorder = _RecordingLetters(letters)
    batch = [record for _, record in found]
    outcome = process_batch(batch, config, sinks.with_letters(recorder))
    failed = set(outcome.failed_sequence_numbers)
    for i, record in found:
        if _sequence_text(record) in failed:
            fates[i] = Fate.FAILED_AGAIN
        elif record_identity(record) in recorder.written:
            fates[i] = Fate.REJECTED_AGAIN
        else:
            fates[i] = Fate.REDRIVEN
    return fates


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    chunk: list[_T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _placeholder(message: str) -> dict[str, Any]:
    return {"error": {"class": "UnreadableEntry", "message": message}}


def _queue_client(sinks: Sinks) -> Any:
    """An SQS client for reading the queue, behind the dead-letter guard's retry and breaker."""
    from syncer.sinks.build import aws_client
    from syncer.sinks.resilience import Guarded

    return Guarded(aws_client("sqs"), sinks.deadletter_guard)


def list_entries(config: Config, sinks: Sinks, limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` entries, oldest first (SQS: received and left visible again).

    An unreadable entry is shown as an ``UnreadableEntry`` line; it stays where it is.
    """
    entries: list[dict[str, Any]] = []
    if config.deadletter.sqs_queue_url:
        client = _queue_client(sinks)
        for message in _receive(client, config.deadletter.sqs_queue_url, limit, visibility_s=0):
            entry = parse_entry(message["Body"])
            entries.append(entry or _placeholder(f"message {message.get('MessageId')}"))
        return entries
    assert config.deadletter.file is not None
    for line in read_file_lines(Path(config.deadletter.file)):
        entry = line.entry if line.entry is not None else parse_entry(line.data)
        entries.append(entry or _placeholder(line.error or f"line {line.number}"))
        if len(entries) >= limit:
            break
    return entries


def _receive(
    client: Any, queue_url: str, limit: int, visibility_s: int
) -> Iterator[dict[str, Any]]:
    received = 0
    while received < limit:
        response = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - received),
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=0,
        )
        messages = response.get("Messages", [])
        if not messages:
            return
        received += len(messages)
        yield from messages


def redrive(
    config: Config, sinks: Sinks, echo: Callable[[str], None] = lambda _: None
) -> RedriveResult:
    """Send every dead-lettered stream record through the pipeline again."""
    result = RedriveResult()
    if config.deadletter.sqs_queue_url:
        return _redrive_sqs(config, sinks, config.deadletter.sqs_queue_url, result, echo)
    assert config.deadletter.file is not None
    return _redrive_file(config, sinks, Path(config.deadletter.file), result, echo)


def _redrive_file(
    config: Config,
    sinks: Sinks,
    path: Path,
    result: RedriveResult,
    echo: Callable[[str], None],
) -> RedriveResult:
    """Take the file away under the writers' lock and redrive it chunk by chunk.

    Writers append under the same lock (``<file>.lock``), so once the file is renamed no letter
    can land in it; new letters (and kept entries) go to a fresh file.
    Leftovers of a crashed redrive are picked up again (its kept entries may then appear twice;
    a duplicate dead letter is harmless, a lost one is not).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(path.with_name(f"{path.name}.redrive-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RedriveBusyError(f"another redrive of {path} is running") from None
        take_for_redrive(path)
        for taken in sorted(path.parent.glob(f"{path.name}.redriving-*")):
            echo(f"redriving entries from {taken}")
            for lines in _chunks(read_file_lines(taken), REDRIVE_BATCH):
                entries = [
                    line.entry if line.entry is not None else parse_entry(line.data)
                    for line in lines
                ]
                fates = redrive_entries(entries, config, sinks)
                result.count(fates)
                for line, fate in zip(lines, fates, strict=True):
                    if fate is Fate.UNREADABLE:
                        echo(f"kept unreadable entry: {taken.name} {line.error}")
                keep = [
                    line.data
                    for line, fate in zip(lines, fates, strict=True)
                    if fate not in (Fate.REDRIVEN, Fate.REJECTED_AGAIN)
                ]
                if keep:
                    locked_append(path, b"".join(keep))  # as stored, byte for byte
            taken.unlink()
    finally:
        os.close(lock_fd)
    return result


def _queued_messages(client: Any, queue_url: str) -> int:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def _redrive_sqs(
    config: Config,
    sinks: Sinks,
    queue_url: str,
    result: RedriveResult,
    echo: Callable[[str], None],
) -> RedriveResult:
    """Redrive the messages queued at the start, at most once each, then stop.

    A record rejected again is sent to the same queue as a new message, so the run is bounded
    twice: by the number of messages queued when it started, and by the first message it
    receives that it sent itself (that one is made visible again and left for the next run).
    """
    client = _queue_client(sinks)
    own: set[str] = set()
    sender = SqsDeadLetters(client, queue_url, on_sent=own.update)
    seen: set[str] = set()
    budget = _queued_messages(client, queue_url)
    echo(f"redriving up to {budget} messages from {queue_url}")
    while budget > 0:
        messages = list(
            _receive(client, queue_url, min(REDRIVE_BATCH, budget), REDRIVE_VISIBILITY_S)
        )
        if not messages:
            break
        fresh = [m for m in messages if m["MessageId"] not in own | seen]
        again = [m for m in messages if m["MessageId"] in own | seen]
        budget -= len(fresh)
        seen.update(m["MessageId"] for m in fresh)
        fates = redrive_entries([parse_entry(m["Body"]) for m in fresh], config, sinks, sender)
        result.count(fates)
        done = [
            m
            for m, fate in zip(fresh, fates, strict=True)
            if fate in (Fate.REDRIVEN, Fate.REJECTED_AGAIN)
        ]
        for m, fate in zip(fresh, fates, strict=True):
            if fate is Fate.UNREADABLE:
                echo(f"kept unreadable message {m['MessageId']}")
        result.not_deleted += _delete(client, queue_url, done, echo)
        if again:
            _release(client, queue_url, again)
            break
    return result


def _delete(
    client: Any, queue_url: str, messages: Sequence[Mapping[str, Any]], echo: Callable[[str], None]
) -> int:
    """Delete ``messages``; how many SQS did not delete (they will be redriven again later)."""
    not_deleted = 0
    for start in range(0, len(messages), 10):
        response = client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                for n, m in enumerate(messages[start : start + 10])
            ],
        )
        for failure in response.get("Failed") or []:
            not_deleted += 1
            echo(
                f"could not delete a redriven message: {failure.get('Code')}: {failure.get('Message')}"
            )
    return not_deleted


def _release(client: Any, queue_url: str, messages: Sequence[Mapping[str, Any]]) -> None:
    """Make messages received but not redriven visible again at once."""
    for start in range(0, len(messages), 10):
        client.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(messages[start : start + 10])
            ],
        )
