"""Index (alias) names: what OpenSearch accepts, and the names syncer derives from each alias."""

from __future__ import annotations

import re

from syncer.errors import ConfigError

# https://opensearch.org/docs/latest/api-reference/index-apis/create-index/#index-naming-restrictions
_INDEX_FORBIDDEN = set('\\/*?"<>|,# :') | {chr(c) for c in range(32)} | {chr(127)}
# syncer derives names from the alias: "<alias>-000001" and "<alias>-reindexing" (the longest).
REINDEXING_SUFFIX = "-reindexing"
MAX_INDEX_NAME_BYTES = 255 - len(REINDEXING_SUFFIX)
_GENERATION_SUFFIX = re.compile(r"-\d{6,}")  # sinks.indices.versioned_index_name: {alias}-NNNNNN


def check_index_name(key: str, index: str) -> None:
    """Refuse an alias name OpenSearch would refuse, or one too long for syncer's derived names."""
    problem = None
    if index in ("", ".", ".."):
        problem = "is empty, '.' or '..'"
    elif index[0] in "_-+":
        problem = "starts with '_', '-' or '+'"
    elif index != index.lower():
        problem = "has upper case letters"
    elif any(c in _INDEX_FORBIDDEN for c in index):
        bad = next(c for c in index if c in _INDEX_FORBIDDEN)
        problem = (
            f'contains {bad!r} (not allowed: \\ / * ? " < > | , # : space, control characters)'
        )
    elif len(index.encode("utf-8", "surrogatepass")) > MAX_INDEX_NAME_BYTES:
        problem = (
            f"has {len(index.encode('utf-8', 'surrogatepass'))} bytes; at most "
            f"{MAX_INDEX_NAME_BYTES} bytes, so that the names syncer derives from it "
            "('-reindexing', '-000001') stay within OpenSearch's 255"
        )
    if problem is not None:
        raise ConfigError(f"{key} {index!r:.80} is not a valid OpenSearch alias name: it {problem}")


def reindex_alias(alias: str) -> str:
    """The alias that points at the index a running ``syncer reindex`` is filling.

    Stream writes go to it as well as to the main alias, so changes made during a reindex are
    not missing after the swap. Every round of every batch asks whether it exists (sent
    alongside the main aliases' ``_mget``), so a warm Lambda container needs no restart to see
    it.
    """
    return f"{alias}{REINDEXING_SUFFIX}"


def derived_from(alias: str, name: str) -> bool:
    """Whether ``name`` is one of the names syncer derives from ``alias`` (its reindex alias
    ``<alias>-reindexing`` or a versioned index ``<alias>-NNNNNN``)."""
    if not name.startswith(alias):
        return False
    suffix = name[len(alias) :]
    return suffix == REINDEXING_SUFFIX or _GENERATION_SUFFIX.fullmatch(suffix) is not None
