"""The swap: the old index's writes blocked, then the alias moved to the new index and the
reindex alias dropped in one request (docs/ordering.md, "The swap")."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from syncer.config import TableConfig
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER
from syncer.sinks.ports import SearchAdmin
from syncer.sinks.resilience import Downstream
from syncer.sinks.search import reindex_alias
from syncer.sinks.search.admin import WRITE_BLOCK, OpenSearchAdmin

log = logging.getLogger("syncer.commands.reindex")
__all__ = ["WRITE_BLOCK", "admin_port", "block_writes", "move_alias", "swap_alias"]


def admin_port(admin: Any) -> SearchAdmin:
    """The admin port; a raw OpenSearch client (before 0.2) is wrapped, with a warning."""
    if hasattr(admin, "update_aliases") and not hasattr(admin, "indices"):
        port: SearchAdmin = admin
        return port
    warnings.warn(
        "passing an OpenSearch client to swap_alias, block_writes, move_alias or plan_rebuilds "
        "is deprecated and will be removed in 0.3.0: pass the admin port (Sinks.admin)",
        DeprecationWarning,
        stacklevel=3,
    )
    from syncer.config import ResilienceConfig

    return OpenSearchAdmin(admin, Downstream("opensearch", ResilienceConfig()))


def swap_alias(
    admin: SearchAdmin, table: TableConfig, new_index: str, old_index: str | None
) -> None:
    """Block writes on ``old_index``, then point the alias at ``new_index`` and drop the reindex
    alias in one atomic request.

    The block comes first, so no write can land in the old index once the reindex alias is gone:
    a batch that resolved the old index before the swap and asks for the reindex alias after it
    gets a 403 for its write, which is retried, and its retry resolves the alias anew (to the
    new index). docs/ordering.md, "The swap", argues each interleaving.
    """
    port = admin_port(admin)
    block_writes(port, old_index)
    move_alias(port, table, new_index, old_index)


def block_writes(admin: SearchAdmin, old_index: str | None) -> None:
    """The job's block phase: no write lands in the old index from here on."""
    if old_index:
        admin_port(admin).set_write_block(old_index, True)


def move_alias(
    admin: SearchAdmin, table: TableConfig, new_index: str, old_index: str | None
) -> None:
    """The job's swap phase: the alias onto the new index, the reindex alias dropped, in one
    atomic request (after ``block_writes``). Fails, changing nothing, if the new index is gone
    (an abandoned job)."""
    admin_port(admin).update_aliases(alias_swap_actions(table, new_index, old_index))
    log.info("alias %s now points at %s (was %s)", table.index, new_index, old_index)


def alias_swap_actions(
    table: TableConfig, new_index: str, old_index: str | None
) -> list[dict[str, Any]]:
    """The one ``POST _aliases`` of a swap: the alias off the old index and onto the new one
    (live documents only, the write index), the reindex alias dropped."""
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
    return actions
