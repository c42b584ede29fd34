"""The swap: the old index's writes blocked, then the alias moved to the new index and the
reindex alias dropped in one request (docs/ordering.md, "The swap")."""

from __future__ import annotations

import logging
from typing import Any

from syncer.config import TableConfig
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER
from syncer.sinks.search import reindex_alias

log = logging.getLogger("syncer.commands.reindex")
WRITE_BLOCK = "index.blocks.write"


def swap_alias(client: Any, table: TableConfig, new_index: str, old_index: str | None) -> None:
    """Block writes on ``old_index``, then point the alias at ``new_index`` and drop the reindex
    alias in one atomic request.

    The block comes first, so no write can land in the old index once the reindex alias is gone:
    a batch that resolved the old index before the swap and asks for the reindex alias after it
    gets a 403 for its write, which is retried, and its retry resolves the alias anew (to the
    new index). docs/ordering.md, "The swap", argues each interleaving.
    """
    block_writes(client, old_index)
    move_alias(client, table, new_index, old_index)


def block_writes(client: Any, old_index: str | None) -> None:
    """The job's block phase: no write lands in the old index from here on."""
    if old_index:
        client.indices.put_settings(index=old_index, body={WRITE_BLOCK: True})


def move_alias(client: Any, table: TableConfig, new_index: str, old_index: str | None) -> None:
    """The job's swap phase: the alias onto the new index, the reindex alias dropped, in one
    atomic request (after ``block_writes``). Fails, changing nothing, if the new index is gone
    (an abandoned job)."""
    actions: list[dict[str, Any]] = []
    if old_index:
        actions.append({"remove": {"index": old_index, "alias": table.index}})
    actions.append(
        {
            "add": {
                "index": new_index,
                "alias": table.index,
                "is_write_index": True,
                "filter": LIVE_DOCUMENTS_FILTER,
            }
        }
    )
    actions.append({"remove": {"index": new_index, "alias": reindex_alias(table.index)}})
    client.indices.update_aliases(body={"actions": actions})
    log.info("alias %s now points at %s (was %s)", table.index, new_index, old_index)
