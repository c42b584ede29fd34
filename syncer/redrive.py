"""Show dead-lettered records and send them through the pipeline again (``syncer deadletter``).

Redriving applies the ordering rules like any delivery: a record older than the indexed state
changes nothing in the index, and its cache keys are invalidated once more. An entry whose
records fail again stays in the dead letters; one that is rejected again is replaced by a new
entry with the new reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer import jsoncodec
from syncer.config import Config
from syncer.pipeline import Sinks, process_batch

REDRIVE_BATCH = 100


@dataclass
class RedriveResult:
    entries: int = 0
    redriven: int = 0
    failed_again: int = 0
    not_redrivable: int = 0


def _is_stream_record(entry: Mapping[str, Any]) -> bool:
    record = entry.get("record")
    return isinstance(record, Mapping) and isinstance(record.get("dynamodb"), Mapping)


def _sequence(entry: Mapping[str, Any]) -> int:
    text = str(entry.get("sequence_number") or "")
    return int(text) if text.isdigit() else -1


def read_file_entries(path: Path) -> Iterator[dict[str, Any]]:
    """Entries of a JSONL dead-letter file; an unreadable line is shown, not skipped silently."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield jsoncodec.loads(line)
                except ValueError as error:
                    yield {
                        "error": {"class": "UnreadableEntry", "message": f"line {number}: {error}"}
                    }


def list_entries(config: Config, sinks: Sinks, limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` entries, oldest first (SQS: received and left visible again)."""
    if config.deadletter.sqs_queue_url:
        entries = []
        for message in _receive(sinks, config.deadletter.sqs_queue_url, limit, visibility_s=0):
            entries.append(jsoncodec.loads(message["Body"]))
        return entries
    assert config.deadletter.file is not None
    entries = []
    for entry in read_file_entries(Path(config.deadletter.file)):
        entries.append(entry)
        if len(entries) >= limit:
            break
    return entries


def _receive(
    sinks: Sinks, queue_url: str, limit: int, visibility_s: int
) -> Iterator[dict[str, Any]]:
    client = sinks.deadletters.client  # type: ignore[attr-defined]
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


def _redrive_entries(
    entries: list[dict[str, Any]], config: Config, sinks: Sinks, result: RedriveResult
) -> set[int]:
    """Process the stream records of ``entries`` in sequence order; positions that failed."""
    order = sorted(
        (i for i, e in enumerate(entries) if _is_stream_record(e)),
        key=lambda i: _sequence(entries[i]),
    )
    result.not_redrivable += len(entries) - len(order)
    failed: set[int] = {i for i in range(len(entries)) if not _is_stream_record(entries[i])}
    for start in range(0, len(order), REDRIVE_BATCH):
        positions = order[start : start + REDRIVE_BATCH]
        outcome = process_batch([entries[i]["record"] for i in positions], config, sinks)
        failed_numbers = set(outcome.failed_sequence_numbers)
        for i in positions:
            if str(entries[i]["record"]["dynamodb"].get("SequenceNumber")) in failed_numbers:
                failed.add(i)
                result.failed_again += 1
            else:
                result.redriven += 1
    return failed


def redrive(
    config: Config, sinks: Sinks, echo: Callable[[str], None] = lambda _: None
) -> RedriveResult:
    """Send every dead-lettered stream record through the pipeline again."""
    result = RedriveResult()
    if config.deadletter.sqs_queue_url:
        return _redrive_sqs(config, sinks, result)
    assert config.deadletter.file is not None
    path = Path(config.deadletter.file)
    # Take the file away first, so entries written during the redrive land in a fresh file;
    # leftovers of a crashed redrive are picked up again.
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.redriving-{time.time_ns()}"))
    for taken in sorted(path.parent.glob(f"{path.name}.redriving-*")):
        entries = list(read_file_entries(taken))
        result.entries += len(entries)
        echo(f"redriving {len(entries)} entries from {taken}")
        failed = _redrive_entries(entries, config, sinks, result)
        keep = [entries[i] for i in sorted(failed)]
        if keep:
            with path.open("ab") as handle:
                handle.write(b"".join(jsoncodec.dumps(e) + b"\n" for e in keep))
                handle.flush()
                os.fsync(handle.fileno())
        taken.unlink()
    return result


def _redrive_sqs(config: Config, sinks: Sinks, result: RedriveResult) -> RedriveResult:
    queue_url = config.deadletter.sqs_queue_url
    assert queue_url is not None
    client = sinks.deadletters.client  # type: ignore[attr-defined]
    while True:
        messages = list(_receive(sinks, queue_url, 100, visibility_s=120))
        if not messages:
            return result
        entries = [jsoncodec.loads(m["Body"]) for m in messages]
        result.entries += len(entries)
        failed = _redrive_entries(entries, config, sinks, result)
        done = [m for i, m in enumerate(messages) if i not in failed]
        for start in range(0, len(done), 10):
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(done[start : start + 10])
                ],
            )
        if len(done) == 0:
            return result  # everything left failed again; it becomes visible after the timeout
