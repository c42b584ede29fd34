"""The checker function's SQS messages, checked one by one before any of them is checked.

A message is a check only if it parses (``SampledWrite.from_message``), names a configured table
and index, and its ``keys`` can be a DynamoDB key: each attribute one typed value (one tag, S, N
or B, not empty) and together the key of the message's document id. Anything else is
malformed: it is counted and dropped, never retried, and never reaches the batch reads that the
good messages beside it share (docs/consistency.md). Whether the keys are the table's key schema
only DynamoDB can say (the checker's role may read items, not describe tables): a read it
refuses is tried again message by message (``syncer.consistency.queue``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from syncer.config import Config
from syncer.consistency.check import check_target
from syncer.core.consistency import SampledWrite
from syncer.core.keys import key_document_id
from syncer.errors import PoisonRecordError

KEY_TYPES = ("S", "N", "B")  # the only types a DynamoDB key attribute can have


def parse_message(record: object, config: Config) -> tuple[str, SampledWrite]:
    """(messageId, the sample) of one SQS record; ``PoisonRecordError`` saying what is wrong."""
    if not isinstance(record, Mapping):
        raise PoisonRecordError("an SQS record must be a JSON object")
    message_id = record.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise PoisonRecordError("SQS record without a messageId")
    body = record.get("body")
    if not isinstance(body, str | bytes):
        raise PoisonRecordError("SQS record without a text body")
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise PoisonRecordError(f"body is not JSON: {error}") from None
    sample = SampledWrite.from_message(message)
    check_target(config, sample)  # a table or index this configuration does not have
    check_keys(sample)
    return message_id, sample


def check_keys(sample: SampledWrite) -> None:
    """``PoisonRecordError`` unless ``sample.keys`` can be a key, the key of its document id."""
    keys: Mapping[str, Any] = sample.keys
    if not keys:
        raise PoisonRecordError("keys are empty")
    if len(keys) > 2:
        raise PoisonRecordError(f"keys name {len(keys)} attributes: a DynamoDB key has 1 or 2")
    for name, typed in keys.items():
        if not isinstance(typed, Mapping) or len(typed) != 1:
            raise PoisonRecordError(
                f'key {name!r} must be one DynamoDB-typed value such as {{"S": "..."}}, '
                f"got {typed!r:.80}"
            )
        ((tag, value),) = typed.items()
        if tag not in KEY_TYPES:
            raise PoisonRecordError(f"key {name!r} is typed {tag!r}: key types are S, N and B")
        _check_key_value(name, tag, value)
    try:
        document_id = key_document_id(keys)
    except PoisonRecordError as error:
        raise PoisonRecordError(f"keys cannot form a document id: {error}") from None
    if document_id != sample.document_id:
        raise PoisonRecordError(
            f"keys are those of document {document_id!r}, the message names {sample.document_id!r}"
        )


def _check_key_value(name: str, tag: str, value: object) -> None:
    """A key value as Lambda JSON carries it: non-empty text; a number; base64 of some bytes."""
    if not isinstance(value, str) or not value:
        raise PoisonRecordError(f"key {name!r} must be a non-empty string in its {tag!r} form")
    if tag == "N":
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise PoisonRecordError(f"key {name!r} is not a number: {value!r:.40}") from None
        if not number.is_finite():
            raise PoisonRecordError(f"key {name!r} is not a finite number: {value!r:.40}")
    elif tag == "B":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise PoisonRecordError(f"key {name!r} is not base64: {value!r:.40}") from None
        if not decoded:
            raise PoisonRecordError(f"key {name!r} is empty binary")
