"""JSON encoding that keeps DynamoDB numbers exact: orjson plus raw fragments for big numbers."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import orjson

from syncer.core.attributes import BigInt

_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS


def _encode_exact_number(value: Any) -> Any:
    # orjson refuses Decimal and integers beyond 64 bits; a Fragment is inserted verbatim, so
    # the number reaches OpenSearch with every digit instead of being rounded through float.
    if isinstance(value, Decimal):  # the common case first; str(Decimal) is JSON number text
        return orjson.Fragment(str(value))
    if isinstance(value, BigInt):
        return orjson.Fragment(int.__str__(value).encode("ascii"))
    # With OPT_PASSTHROUGH_SUBCLASS other subclasses land here too: encode them as their base.
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact JSON bytes, numbers exact."""
    return orjson.dumps(value, default=_encode_exact_number, option=_OPTIONS)


def loads(data: bytes | str) -> Any:
    """Decode JSON text (orjson: integers beyond 64 bits come back as floats)."""
    return orjson.loads(data)
