"""The content fingerprint of a document: the same for a table item and its indexed document."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from syncer.core import jsoncodec
from syncer.core.documents import SYNCER_FIELD


def content_fingerprint(source: Mapping[str, Any]) -> str:
    """A hash of a document's content, the same for a table item and its indexed document."""
    plain = {k: v for k, v in source.items() if k != SYNCER_FIELD}
    # Through stdlib json both sides get the same numbers: exact integers, floats for decimals.
    normalised = json.loads(jsoncodec.dumps(plain))
    return hashlib.sha256(json.dumps(normalised, sort_keys=True).encode()).hexdigest()
