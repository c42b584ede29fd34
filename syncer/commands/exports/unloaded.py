"""Export lines that load could not put into the new index (undecodable, their route's transform
failed, or OpenSearch rejected the document): their items must not look absent from the export.

``finish`` tombstones every document the old index holds live and the new one lacks, as an item
the export did not hold. An item whose line is in the export but could not be loaded is no such
item: removing it from search would be wrong. So, for each, the item is read again from the table
(a consistent read) and written as found; if that state cannot be indexed either, the old
index's document is kept (copied into the new index with its own version). Each such line is
also dead-lettered by load, and counted here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncer.commands.reindex.writes import rereader, route_named, routed_read
from syncer.config import TableConfig
from syncer.core.command_planners import KeepOldPlanner, RereadPlanner
from syncer.core.documents import (
    DocumentRef,
    Settled,
)
from syncer.core.rounds import write_documents
from syncer.errors import DownstreamUnavailableError
from syncer.sinks.ports import Sinks
from syncer.sinks.search import ApplyResult, WriteOptions

log = logging.getLogger("syncer.commands.exports")


@dataclass(frozen=True)
class UnloadedCounts:
    """What became of the items of lines that could not be loaded."""

    reread: int = 0  # written (or tombstoned) as a consistent read of the table found them
    kept_old: int = 0  # the old index's document kept
    lost: int = 0  # neither could be indexed: reported, the new index lacks them


def _stop_if_failed(result: ApplyResult, table: TableConfig) -> None:
    failed = [o for o in result.outcomes.values() if o.status is Settled.FAILED]
    if failed:
        raise DownstreamUnavailableError(
            f"export load of {table.name!r}: {len(failed)} item(s) of undecodable lines could "
            f"not be settled ({failed[0].reason}); run the same command again to resume"
        )


def _reread_into_new(
    sinks: Sinks,
    table: TableConfig,
    targets: Mapping[str, str],
    key_types: Mapping[str, str],
    doc_ids: Sequence[str],
) -> tuple[set[str], set[str]]:
    """Each item read again from the table and written into every new index as its route
    holds it; (ids settled, ids whose state could not be indexed)."""
    shapes = {new: routed_read(table, route_named(table, alias)) for alias, new in targets.items()}
    views = {new: table.route_table(route_named(table, alias)) for alias, new in targets.items()}

    refs = [(new, doc_id) for new in targets.values() for doc_id in doc_ids]
    # through the reindex alias: nothing written here re-creates an index --abandon dropped
    options = WriteOptions(reread=rereader(sinks, table, key_types), require_alias=True)
    result = write_documents(sinks.search, refs, RereadPlanner(views, shapes), options)
    _stop_if_failed(result, table)
    rejected = {ref[1] for ref, o in result.outcomes.items() if o.status is Settled.REJECTED}
    return set(doc_ids) - rejected, rejected


def _keep_old_documents(
    sinks: Sinks,
    table: TableConfig,
    targets: Mapping[str, str],
    old_indices: Mapping[str, str | None],
    doc_ids: Sequence[str],
) -> set[str]:
    """The old indices' documents of ``doc_ids`` copied into the new ones where these hold
    nothing newer; the ids kept so."""
    kept: set[str] = set()
    for alias, new_index in targets.items():
        old_index = old_indices.get(alias)
        if not old_index or not doc_ids:
            continue
        found = sinks.admin.documents(old_index, doc_ids)
        olds: dict[DocumentRef, Mapping[str, Any]] = {
            (new_index, doc_id): doc["_source"] for doc_id, doc in found.items()
        }
        if not olds:
            continue

        result = write_documents(
            sinks.search, list(olds), KeepOldPlanner(olds), WriteOptions(require_alias=True)
        )
        _stop_if_failed(result, table)
        kept |= {
            ref[1]
            for ref, o in result.outcomes.items()
            if o.status in (Settled.WRITTEN, Settled.TOMBSTONED, Settled.SKIPPED)
        }
    return kept


def settle_unloaded(
    sinks: Sinks,
    table: TableConfig,
    targets: Mapping[str, str],
    old_indices: Mapping[str, str | None],
    key_types: Mapping[str, str],
    doc_ids: Sequence[str],
    where: str,
) -> UnloadedCounts:
    """The items of lines load could not index: read again, else the old document kept."""
    ids = list(dict.fromkeys(doc_ids))
    if not ids:
        return UnloadedCounts()
    _settled, rejected = _reread_into_new(sinks, table, targets, key_types, ids)
    kept = _keep_old_documents(sinks, table, targets, old_indices, sorted(rejected))
    lost = sorted(rejected - kept)
    counts = UnloadedCounts(len(ids) - len(rejected), len(rejected & kept), len(lost))
    log.warning(
        "%s: %d line(s) could not be loaded as exported (dead-lettered): %d read again from "
        "the table, %d kept as the old index held them, %d in neither index%s",
        where,
        len(ids),
        counts.reread,
        counts.kept_old,
        counts.lost,
        f" (e.g. {lost[0]})" if lost else "",
    )
    return counts
