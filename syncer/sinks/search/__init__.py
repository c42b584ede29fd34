"""The OpenSearch sink: ``SearchSink``, and ``write_documents``, the one path of every write.

One job per module: ``aliases`` (the reindex alias), ``reads`` (``_mget`` and scrolls),
``bulk`` (NDJSON bodies and item results), ``targets`` (a write round's reads, ``HEAD`` on a
pool), ``writes`` (the write loop), ``sink`` (the guarded store), ``client`` (the client).
"""

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
from syncer.sinks.search.writes import write_documents

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
    "write_documents",
]
