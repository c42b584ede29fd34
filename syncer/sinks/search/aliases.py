"""Index aliases: the reindex alias next to each alias, and whether an alias exists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer.config.names import REINDEXING_SUFFIX
from syncer.config.names import reindex_alias as reindex_alias

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

# Defined once, in config/names.py (the names syncer derives from an alias); re-exported here.
REINDEX_ALIAS_SUFFIX = REINDEXING_SUFFIX


def alias_exists(client: OpenSearch, alias: str, timeout_s: float | None = None) -> bool:
    """Whether ``alias`` exists (a ``HEAD /_alias`` request)."""
    return bool(client.indices.exists_alias(name=alias, params=timeout_params(timeout_s)))


def timeout_params(timeout_s: float | None) -> dict[str, Any]:
    """opensearch-py's per-request timeout, when there is one."""
    return {} if timeout_s is None else {"request_timeout": timeout_s}
