"""``syncer purge-tombstones``: delete tombstones too old for any replay to need them.

A delete leaves a tombstone so that an older change delivered later cannot bring the item back
(docs/ordering.md). A tombstone can go once no change older than it can still arrive: once it is
older than the stream's retention (24 hours) plus the longest time a dead letter may wait for a
redrive. The default, 15 days, covers the 14 days the deployed dead-letter queue keeps messages.

The purge searches the concrete indices behind the alias (the alias's filter hides tombstones)
page by page, and deletes each page in one ``_bulk`` with ``if_seq_no``/``if_primary_term``: a
tombstone that a newer change replaced after the search found it is left alone, because the
conditional delete conflicts. (``_delete_by_query`` does the same, but it lives in the reindex
module, which not every distribution ships.) Nothing runs while a reindex is filling a new
index; its scanned writes rely on the tombstones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncer.config import TableConfig
from syncer.core.command_planners import PurgePlanner
from syncer.core.documents import SYNCER_FIELD, Settled
from syncer.core.rounds import write_documents
from syncer.errors import PurgeRefusedError, SyncerError
from syncer.sinks.ports import SearchStore
from syncer.sinks.search import WriteOptions, reindex_alias

DAY_S = 86_400
MIN_AGE_S = DAY_S  # the stream's retention: younger tombstones may still be needed by a retry


@dataclass(frozen=True, slots=True)
class PurgeReport:
    indices: tuple[str, ...]
    matched: int
    deleted: int
    conflicts: int
    failures: tuple[str, ...]


def parse_age(text: str) -> float:
    """``36h``, ``15d`` or a number of seconds, as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": DAY_S}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # negative, infinite, NaN, or not a number at all
        raise ValueError(f"not an age: {text!r} (examples: 36h, 15d)")
    return value * units[unit]


def tombstone_query(cutoff_ms: int) -> dict[str, Any]:
    """Tombstones whose change happened before ``cutoff_ms``; those without a time never match."""
    return {
        "bool": {
            "filter": [
                {"term": {f"{SYNCER_FIELD}.deleted": True}},
                {"range": {f"{SYNCER_FIELD}.changed_at": {"lt": cutoff_ms}}},
            ]
        }
    }


def purge_tombstones(
    search: SearchStore,
    table: TableConfig,
    older_than_s: float,
    *,
    dry_run: bool = False,
    now: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    page_size: int = 1000,
) -> PurgeReport:
    """Delete the tombstones of ``table`` older than ``older_than_s``; count them on a dry run."""
    if older_than_s < MIN_AGE_S:
        raise PurgeRefusedError(
            f"tombstones younger than {MIN_AGE_S // 3600} hours may still stop a retried or "
            "redelivered older change (stream retention is 24 hours); choose a longer age"
        )
    if search.alias_exists(reindex_alias(table.index)):
        raise PurgeRefusedError(
            f"a reindex of {table.name!r} is running ({reindex_alias(table.index)} exists); "
            "purge after it finished"
        )
    from opensearchpy.exceptions import NotFoundError

    try:
        indices = tuple(sorted(search.indices_of(table.index)))
    except NotFoundError:
        raise SyncerError(
            f"alias {table.index!r} does not exist; run `syncer setup` first"
        ) from None
    cutoff_ms = int(((time.time() if now is None else now) - older_than_s) * 1000)
    query = tombstone_query(cutoff_ms)
    target = ",".join(indices)
    # count and search see only refreshed documents.
    search.refresh(target)
    matched = search.count(target, query)
    deleted = conflicts = 0
    failures: list[str] = []
    # Each hit is deleted or conflicted (changed, so it no longer matches), and tombstones made
    # from now on are younger than the cutoff: the loop sees about ``matched`` hits in all.
    budget = 2 * matched + page_size
    while not dry_run and budget > 0:
        hits = search.search(
            target,
            {"query": query, "size": page_size, "_source": False, "seq_no_primary_term": True},
        )
        if not hits:
            break
        budget -= len(hits)
        gone, clashed, failed = _delete_page(search, hits, cutoff_ms)
        deleted, conflicts = deleted + gone, conflicts + clashed
        failures.extend(failed)
        if on_progress is not None:
            on_progress(deleted + conflicts, matched)
        if failed:  # the same hits would fail again: report them rather than spin
            break
        search.refresh(target)
    return PurgeReport(indices, matched, deleted, conflicts, tuple(failures))


def _delete_page(
    search: SearchStore, hits: list[dict[str, Any]], cutoff_ms: int
) -> tuple[int, int, list[str]]:
    """Delete each hit only if it is still an old tombstone; (deleted, conflicts, failures)."""
    plan = PurgePlanner(cutoff_ms)
    refs = [(hit["_index"], hit["_id"]) for hit in hits]
    result = write_documents(search, refs, plan, WriteOptions(replan_conflicts=False))
    deleted = result.count(Settled.DELETED) + result.count(Settled.SKIPPED) - len(plan.replaced)
    conflicts = result.count(Settled.CONFLICT) + len(plan.replaced)
    failures = [
        f"{ref[1]}: {outcome.reason}"[:300]
        for ref, outcome in result.outcomes.items()
        if outcome.status in (Settled.FAILED, Settled.REJECTED)
    ]
    return deleted, conflicts, failures
