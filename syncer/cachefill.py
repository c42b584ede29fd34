"""Deprecated: the leased cache moved to ``syncer.client.cachefill`` in 0.1.0.

Every name of ``syncer.client.cachefill`` still imports from here, with a ``DeprecationWarning``
naming the new path, until 0.3.0 removes this module (CHANGELOG.md, docs/api.md).
"""

from __future__ import annotations

import warnings
from typing import Any

from syncer.client import cachefill as _moved

NEW_PATH = "syncer.client.cachefill"
REMOVED_IN = "0.3.0"


def __getattr__(name: str) -> Any:
    value = getattr(_moved, name)  # AttributeError for a name the new module does not have
    warnings.warn(
        f"syncer.cachefill is deprecated and will be removed in {REMOVED_IN}: import {name} "
        f"from {NEW_PATH} instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return value


def __dir__() -> list[str]:
    return sorted(_moved.__all__)


__all__ = list(_moved.__all__)  # served by __getattr__, each with its warning
