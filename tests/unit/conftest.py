"""Helpers for the unit tests: load the hand-built events and build stream records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from syncer.core.records import ChangeRecord, decode_record
from tests.helpers import load_event as _load_event

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"

EventLoader = Callable[[str], dict[str, Any]]
RecordMaker = Callable[..., ChangeRecord]


def _typed(plain: Mapping[str, Any]) -> dict[str, Any]:
    """A tiny typed-attribute encoder for test items: str -> S, int -> N, None -> NULL."""
    typed: dict[str, Any] = {}
    for name, value in plain.items():
        if value is None:
            typed[name] = {"NULL": True}
        elif isinstance(value, str):
            typed[name] = {"S": value}
        elif isinstance(value, int):
            typed[name] = {"N": str(value)}
        else:
            raise TypeError(f"no test encoding for {type(value).__name__}")
    return typed


def _make_record(
    event_name: str,
    sequence: int | str,
    *,
    keys: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    view_type: str = "NEW_AND_OLD_IMAGES",
    ttl: bool = False,
    table: str = "catalog",
) -> ChangeRecord:
    """Decode a stream record built from plain values, as Lambda would deliver it."""
    keys = {"pk": "p-1", "sk": "v1"} if keys is None else keys
    body: dict[str, Any] = {"ApproximateCreationDateTime": 1704067200, "Keys": _typed(keys)}
    if new is not None:
        body["NewImage"] = _typed({**new, **keys})
    if old is not None:
        body["OldImage"] = _typed({**old, **keys})
    body.update({"SequenceNumber": str(sequence), "SizeBytes": 64, "StreamViewType": view_type})
    raw: dict[str, Any] = {
        "eventID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": body,
        "eventSourceARN": STREAM_ARN.replace("table/catalog/", f"table/{table}/"),
    }
    if ttl:
        raw["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return decode_record(raw)


@pytest.fixture(scope="session")
def load_event() -> EventLoader:
    """Return a function that reads ``tests/events/<name>`` as JSON."""
    return _load_event


@pytest.fixture(scope="session")
def make_record() -> RecordMaker:
    """Return a function that builds and decodes one stream record from plain values."""
    return _make_record
