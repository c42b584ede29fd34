"""A document's content as one hash, the same for a table item and its indexed document."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from syncer.core.documents import SYNCER_FIELD


def _as_read_back(value: Any) -> Any:
    """``value`` as OpenSearch gives it back: exact integers of any size, floats for decimals.

    What syncer writes is exact JSON text (``jsoncodec``); opensearch-py reads integers back as
    Python ints of any size and other numbers as floats, so the table side is brought to that.
    No step goes through orjson, which refuses integers beyond 64 bits.
    """
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return int(value)  # BigInt and other subclasses: the plain number
    if isinstance(value, Decimal):
        return json.loads(str(value))  # "1.50" -> 1.5, "1E+2" -> 100.0, as the JSON reader does
    if isinstance(value, Mapping):
        return {str(key): _as_read_back(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_read_back(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(_as_read_back(item) for item in value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def content_fingerprint(source: Mapping[str, Any]) -> str:
    """A hash of a document's content (``_syncer`` left out), from either side of the sync."""
    plain = {key: _as_read_back(value) for key, value in source.items() if key != SYNCER_FIELD}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
