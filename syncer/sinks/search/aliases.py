"""Index aliases: the reindex alias next to each alias, whether an alias exists, where it points."""

from __future__ import annotations

from collections.abc import Collection
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


def current_indices(
    client: OpenSearch, aliases: Collection[str], timeout_s: float | None = None
) -> dict[str, str | None]:
    """The one concrete index each of ``aliases`` resolves to (one ``GET /_alias/a,b``).

    An alias that does not exist (OpenSearch answers 404 and lists the others) is left out;
    one that names several indices maps to None.
    """
    if not aliases:
        return {}
    response = client.indices.get_alias(
        name=",".join(sorted(aliases)), params={"ignore": 404, **timeout_params(timeout_s)}
    )
    indices: dict[str, list[str]] = {}
    for index, entry in response.items():
        if isinstance(entry, dict):  # the 404's "error" and "status" are not indices
            for alias in entry.get("aliases") or ():
                indices.setdefault(alias, []).append(index)
    return {alias: found[0] if len(found) == 1 else None for alias, found in indices.items()}
