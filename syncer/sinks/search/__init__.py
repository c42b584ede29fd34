"""The OpenSearch sink: ``SearchSink``, which sends requests and reads their results.

One job per module: ``aliases`` (the reindex alias), ``reads`` (``_mget`` and scrolls),
``bulk`` (NDJSON bodies and item results), ``targets`` (a write round's reads, ``HEAD`` on a
pool), ``sink`` (the guarded store), ``client`` (the client). The write rounds that run over
it are ``syncer.core.rounds.write_documents``.
"""

import warnings
from typing import Any

from syncer.core.documents import DocumentWrite, WriteKind

# The write types live in core (shared with the planners); re-exported for the commands.
from syncer.core.writes import ApplyResult, Planner, RefOutcome, Rereader, WriteOptions
from syncer.sinks.search.aliases import REINDEX_ALIAS_SUFFIX, alias_exists, reindex_alias
from syncer.sinks.search.bulk import ItemResult, ItemStatus, bulk_chunks, item_result, send_bulk
from syncer.sinks.search.client import make_client
from syncer.sinks.search.reads import (
    Body,
    Hit,
    check_shards,
    raise_for_mget_error,
    read_targets,
    scroll_pages,
)
from syncer.sinks.search.sink import SearchSink, apply_writes

__all__ = [
    "REINDEX_ALIAS_SUFFIX",
    "ApplyResult",
    "Body",
    "DocumentWrite",
    "Hit",
    "ItemResult",
    "ItemStatus",
    "Planner",
    "RefOutcome",
    "Rereader",
    "SearchSink",
    "WriteKind",
    "WriteOptions",
    "alias_exists",
    "apply_writes",
    "bulk_chunks",
    "check_shards",
    "item_result",
    "make_client",
    "raise_for_mget_error",
    "read_targets",
    "reindex_alias",
    "scroll_pages",
    "send_bulk",
]


def __getattr__(name: str) -> Any:
    """``write_documents`` moved to ``syncer.core.rounds`` (the loop is not the adapter's)."""
    if name == "write_documents":
        warnings.warn(
            "syncer.sinks.search.write_documents moved to syncer.core.rounds.write_documents; "
            "the old path goes in 0.3.0",
            DeprecationWarning,
            stacklevel=2,
        )
        from syncer.core.rounds import write_documents

        return write_documents
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
