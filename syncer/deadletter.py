"""Dead-letter destinations: a JSONL file or an SQS queue, one entry per rejected record."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from syncer import jsoncodec
from syncer.config import DeadLetterConfig

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


def _dumps(entry: Mapping[str, Any]) -> bytes:
    try:
        return jsoncodec.dumps(entry)
    except TypeError:
        # orjson refuses integers beyond 64 bits and lone surrogates, which a raw record parsed
        # by the stdlib can hold; the stdlib writes both (exact digits, escaped surrogates).
        return json.dumps(entry, default=str, ensure_ascii=True, separators=(",", ":")).encode()


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
        data = jsoncodec.dumps(entry)
    return data


class FileDeadLetters:
    """Append entries to a JSONL file and fsync before reporting success."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        payload = b"".join(encode_entry(letter) + b"\n" for letter in letters)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())


class SqsDeadLetters:
    """Send entries to an SQS queue; any entry SQS did not take makes the write fail."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def write(self, letters: Sequence[DeadLetter]) -> None:
        bodies = [encode_entry(letter, SQS_MAX_MESSAGE_BYTES - 1024).decode() for letter in letters]
        for chunk in _sqs_batches(bodies):
            response = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
            )
            failed = response.get("Failed") or []
            if failed:
                first = failed[0]
                raise RuntimeError(
                    f"SQS refused {len(failed)} dead letter(s): {first.get('Code')}: {first.get('Message')}"
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
