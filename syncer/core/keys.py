"""Item keys in their two typed forms: Lambda's JSON (binary as base64 text) and boto3's (bytes).

Stream records carry Lambda JSON; boto3 reads and writes bytes. Every conversion between the
two goes through here, so a binary key is never encoded twice or not at all.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from syncer.core.attributes import decode_item
from syncer.core.records import document_id
from syncer.errors import PoisonRecordError

TypedKey = dict[str, dict[str, Any]]  # {"pk": {"S": "a"}, "blob": {"B": b"..." or "base64"}}


def boto_key(key: Mapping[str, Mapping[str, Any]]) -> TypedKey:
    """A key as boto3 takes it: base64 text of B values (Lambda JSON, saved state) as bytes.

    Reads the ``B64`` form that reindex state files of earlier releases saved, too.
    """
    converted: TypedKey = {}
    for name, typed in key.items():
        ((tag, value),) = typed.items()
        if tag == "B64" or (tag == "B" and isinstance(value, str)):
            converted[name] = {"B": base64.b64decode(value)}
        else:
            converted[name] = {tag: value}
    return converted


def lambda_key(key: Mapping[str, Mapping[str, Any]]) -> TypedKey:
    """A key as Lambda JSON carries it (JSON-safe): B values as base64 text."""
    converted: TypedKey = {}
    for name, typed in key.items():
        ((tag, value),) = typed.items()
        if tag == "B" and not isinstance(value, str):
            converted[name] = {"B": base64.b64encode(bytes(value)).decode("ascii")}
        else:
            converted[name] = {tag: value}
    return converted


def key_document_id(key: Mapping[str, Mapping[str, Any]]) -> str:
    """The document id of a typed key, in either form."""
    return document_id(decode_item(lambda_key(key)))


def typed_key_from_id(doc_id: str, key_types: Mapping[str, str]) -> dict[str, Any] | None:
    """The DynamoDB key (boto3's typed form) that ``document_id`` turned into ``doc_id``.

    ``key_types`` is the key schema (attribute name -> S, N or B). None when the id cannot be a
    key of that schema, or is a hashed long id (``#`` + SHA-256), which cannot be inverted.
    The key is never rebuilt from a document's ``_source``, whose numbers come back as doubles.
    """
    if doc_id.startswith("#"):
        return None
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in doc_id:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    names = sorted(key_types)
    if escaped or len(parts) != len(names):
        return None
    typed: dict[str, Any] = {}
    for name, part in zip(names, parts, strict=True):
        kind = key_types[name]
        if kind == "S":
            typed[name] = {"S": part}
        elif kind == "N":
            typed[name] = {"N": part}
        elif kind == "B":
            try:
                typed[name] = {"B": base64.b64decode(part, validate=True)}
            except (binascii.Error, ValueError):
                return None
        else:
            return None
    try:
        if key_document_id(typed) != doc_id:
            return None
    except PoisonRecordError:
        return None
    return typed
