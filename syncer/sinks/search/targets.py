"""A write round's target states: the ``_mget`` here, the reindex aliases' ``HEAD`` on a pool."""

from __future__ import annotations

import os
import threading
from collections.abc import Container, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from typing import TYPE_CHECKING

from syncer.core.documents import DocumentRef, TargetState
from syncer.sinks.search.aliases import alias_exists
from syncer.sinks.search.reads import read_targets

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

# Threads that send a round's reindex-alias HEADs while the calling thread sends its _mget.
SIDE_REQUESTS = 4
_side_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the pid that made it, the pool)
_side_pool_lock = threading.Lock()


def _side_requests() -> ThreadPoolExecutor:
    """The process's pool for requests sent alongside the ``_mget``, made on first use.

    A forked child gets its own: the parent's pool object would come without its threads.
    """
    global _side_pool
    with _side_pool_lock:
        if _side_pool is None or _side_pool[0] != os.getpid():
            pool = ThreadPoolExecutor(SIDE_REQUESTS, thread_name_prefix="syncer-head")
            _side_pool = (os.getpid(), pool)
        return _side_pool[1]


def read_round(
    client: OpenSearch,
    pending: Sequence[DocumentRef],
    fields: Sequence[str],
    optional_aliases: frozenset[str],
    timeout_s: float | None,
    *,
    read: bool,
    absent: Container[DocumentRef] = frozenset(),
    exists: Mapping[str, bool] | None = None,
) -> dict[DocumentRef, TargetState]:
    """The round's target states; refs of optional aliases that do not exist are left out.

        Whether each optional alias exists (a ``HEAD`` per alias, asked afresh every round) does
        not depend on the main aliases' ``_mget``, so the ``HEAD`` requests go out on other
        threads while the ``_mget`` runs here. Only an optional alias that exists (a reindex is
        running: rare) costs a second ``_mget``, for its refs. Without ``read`` every state is
        taken as absent (a scan into a new index), and so is each ref in ``absent`` (a stream INSERT's:
    its write is a ``create``, refused with a 409 when anything is there, and then read and planned
    again). One attempt: any failure fails it whole. An optional alias in ``exists`` is not
    asked again: the round's ``GET _alias`` (known states) already answered for it.
    """
    exists = exists or {}
    asked = sorted(
        {ref[0] for ref in pending if ref[0] in optional_aliases and ref[0] not in exists}
    )
    heads: dict[str, Future[bool]] = {}
    if asked:
        pool = _side_requests()
        heads = {alias: pool.submit(alias_exists, client, alias, timeout_s) for alias in asked}
    try:
        required = [ref for ref in pending if ref[0] not in optional_aliases]
        targets = _read_or_assume(
            client, required, fields, optional_aliases, timeout_s, read, absent
        )
    finally:
        wait_for_futures(heads.values())  # none outlives the attempt, even a failed one
    existing = {alias for alias, head in heads.items() if head.result()}
    existing.update(alias for alias, found in exists.items() if found)
    optional = [ref for ref in pending if ref[0] in existing]
    if optional:
        targets.update(
            _read_or_assume(client, optional, fields, optional_aliases, timeout_s, read, absent)
        )
    return targets


def _read_or_assume(
    client: OpenSearch,
    refs: Sequence[DocumentRef],
    fields: Sequence[str],
    optional_aliases: frozenset[str],
    timeout_s: float | None,
    read: bool,
    absent: Container[DocumentRef] = frozenset(),
) -> dict[DocumentRef, TargetState]:
    if not refs:
        return {}
    if not read:
        return {ref: TargetState(ref[0], None) for ref in refs}
    assumed = {ref: TargetState(ref[0], None) for ref in refs if ref in absent}
    wanted = [ref for ref in refs if ref not in assumed] if assumed else refs
    if not wanted:
        return assumed
    found = read_targets(client, wanted, fields, optional_aliases, timeout_s=timeout_s)
    found.update(assumed)
    return found
