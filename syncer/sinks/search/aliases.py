"""Index aliases: the reindex alias next to each alias, and whether an alias exists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

REINDEX_ALIAS_SUFFIX = "-reindexing"


def reindex_alias(alias: str) -> str:
    """The alias that points at the index a running ``syncer reindex`` is filling.

    Stream writes go to it as well as to the main alias, so changes made during a reindex are
    not missing after the swap. Every round of every batch asks whether it exists (sent
    alongside the main aliases' ``_mget``), so a warm Lambda container needs no restart to see
    it.
    """
    return f"{alias}{REINDEX_ALIAS_SUFFIX}"


def alias_exists(client: OpenSearch, alias: str, timeout_s: float | None = None) -> bool:
    """Whether ``alias`` exists (a ``HEAD /_alias`` request)."""
    return bool(client.indices.exists_alias(name=alias, params=timeout_params(timeout_s)))


def timeout_params(timeout_s: float | None) -> dict[str, Any]:
    """opensearch-py's per-request timeout, when there is one."""
    return {} if timeout_s is None else {"request_timeout": timeout_s}
