"""Where rebuild jobs live: a small hidden OpenSearch index of syncer's own (``syncer-jobs``).

One document per table (its id is the table's name; a backfill's is ``TABLE:backfill``,
``Job.key``) holds the table's current or last job (``syncer.core.jobs.Job``). Every write is conditional: ``op_type=create`` when there is none,
else ``if_seq_no``/``if_primary_term`` of the state it was decided on, so two writers never
both win (docs/ordering.md, "The rebuild job", says why OpenSearch and not a DynamoDB item).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncer.core.jobs import Job
from syncer.errors import SyncerError
from syncer.sinks.resilience import Downstream, Guarded

JOBS_INDEX = "syncer-jobs"
_SETTINGS = {
    "settings": {"index": {"hidden": True, "number_of_shards": 1, "auto_expand_replicas": "0-1"}},
    "mappings": {"dynamic": False, "properties": {"table": {"type": "keyword"}}},
}
# Conditional writes that lost a race, read and tried again (workers' progress all lands here).
UPDATE_ATTEMPTS = 50


class JobConflictError(SyncerError):
    """Another writer changed the job between this one's read and its write."""


@dataclass(frozen=True)
class Stored:
    job: Job
    seq_no: int
    primary_term: int


class JobStore:
    """The jobs index, through OpenSearch's guard (its retries and breaker)."""

    def __init__(self, client: Any, guard: Downstream, index: str = JOBS_INDEX) -> None:
        self._client = Guarded(client, guard)
        self._index = index
        self._ready = False

    def _ensure_index(self) -> None:
        if self._ready:
            return
        from opensearchpy.exceptions import RequestError

        if not self._client.indices.exists(index=self._index):
            try:
                self._client.indices.create(index=self._index, body=_SETTINGS)
            except RequestError as error:
                if getattr(error, "error", "") != "resource_already_exists_exception":
                    raise
        self._ready = True

    def get(self, table: str) -> Stored | None:
        """The job kept under ``table`` (a ``Job.key``) with the version a conditional write
        needs (realtime GET)."""
        from opensearchpy.exceptions import NotFoundError

        self._ensure_index()
        try:
            response = self._client.get(index=self._index, id=table)
        except NotFoundError:
            return None
        if not response.get("found"):
            return None
        return Stored(
            Job.from_json(response["_source"]),
            int(response["_seq_no"]),
            int(response["_primary_term"]),
        )

    def put(self, job: Job, expected: Stored | None) -> Stored:
        """Write ``job`` if the table's record is still ``expected`` (None: there is none)."""
        from opensearchpy.exceptions import ConflictError

        self._ensure_index()
        params: dict[str, Any] = {"refresh": "false"}
        if expected is None:
            params["op_type"] = "create"
        else:
            params["if_seq_no"] = expected.seq_no
            params["if_primary_term"] = expected.primary_term
        try:
            response = self._client.index(
                index=self._index, id=job.key, body=job.to_json(), params=params
            )
        except ConflictError as error:
            raise JobConflictError(f"the job of {job.key!r} changed meanwhile") from error
        return Stored(job, int(response["_seq_no"]), int(response["_primary_term"]))

    def update(self, table: str, change: Callable[[Stored | None], Job]) -> Stored:
        """Read the table's record, ``change`` it, write it conditionally; again on a lost race.

        ``change`` decides from what it is given and raises to refuse (fenced, running)."""
        for attempt in range(UPDATE_ATTEMPTS):
            current = self.get(table)
            job = change(current)
            try:
                return self.put(job, current)
            except JobConflictError:
                time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 10)))
        raise JobConflictError(
            f"the job of {table!r} kept changing: {UPDATE_ATTEMPTS} conditional writes lost"
        )

    def all(self) -> list[Job]:
        """Every table's job (``syncer reindex --status``)."""
        self._ensure_index()
        self._client.indices.refresh(index=self._index)
        response = self._client.search(
            index=self._index, body={"query": {"match_all": {}}, "size": 10_000}
        )
        return [Job.from_json(hit["_source"]) for hit in response["hits"]["hits"]]
