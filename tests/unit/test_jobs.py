"""The rebuild job's lifecycle, pure: ``step(job, event)`` as a table, the fence, the lease."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from syncer.core.jobs import (
    ABANDONED,
    BLOCK,
    CATCH_UP,
    DONE,
    LOAD,
    PREPARE,
    SETTLE,
    SWAP,
    Abandon,
    Advance,
    Counted,
    Event,
    Heartbeat,
    Job,
    JobFencedError,
    JobTransitionError,
    Progressed,
    Rebuild,
    Released,
    TakeOver,
    WorkProgress,
    describe,
    fence,
    holder_alive,
    step,
)


def _job(phase: str = PREPARE, **changes: Any) -> Job:
    job = Job(
        id="catalog-abc123",
        table="catalog",
        kind="export",
        owner="host:1:aa",
        epoch=1,
        phase=phase,
        started_at=100.0,
        heartbeat_at=100.0,
        holder="host:1",
        rebuilds=(Rebuild("catalog", "catalog-000002", "catalog-000001"),),
        export_uri="s3://b/e",
        work_items=("f1", "f2"),
    )
    return dataclasses.replace(job, **changes)


DONE_ITEMS = {"f1": WorkProgress(done=True), "f2": WorkProgress(done=True)}


@pytest.mark.parametrize(
    ("before", "event", "phase_after", "epoch_after"),
    [
        (_job(PREPARE), Advance(PREPARE), LOAD, 1),
        (_job(LOAD, progress=DONE_ITEMS), Advance(LOAD), SETTLE, 1),
        (_job(SETTLE), Advance(SETTLE), BLOCK, 1),
        (_job(BLOCK), Advance(BLOCK), SWAP, 1),
        (_job(SWAP), Advance(SWAP), CATCH_UP, 1),
        (_job(CATCH_UP), Advance(CATCH_UP), DONE, 1),
        (_job(LOAD), TakeOver("other:2:bb", "other:2", 200.0), LOAD, 2),
        (_job(SWAP), TakeOver("other:2:bb", "other:2", 200.0), SWAP, 2),
        (_job(PREPARE), Abandon("ops@host"), ABANDONED, 2),
        (_job(LOAD), Abandon("ops@host"), ABANDONED, 2),
        (_job(BLOCK), Abandon("ops@host"), ABANDONED, 2),
        (_job(LOAD, kind="backfill", progress=DONE_ITEMS), Advance(LOAD), DONE, 1),
        (_job(LOAD), Heartbeat("host:1", 150.0), LOAD, 1),
        (_job(LOAD), Released(), LOAD, 1),
    ],
)
def test_allowed_transitions(before: Job, event: Event, phase_after: str, epoch_after: int) -> None:
    """Each phase moves only to the next; a take-over or abandon raises the epoch (the fence)."""
    after = step(before, event)
    assert (after.phase, after.epoch) == (phase_after, epoch_after)


@pytest.mark.parametrize(
    ("before", "event", "message"),
    [
        (_job(LOAD), Advance(LOAD), "2 work item"),
        (_job(LOAD, progress={"f1": WorkProgress(done=True)}), Advance(LOAD), "f2"),
        (_job(SETTLE), Advance(LOAD), "phase settle"),
        (_job(CATCH_UP), Abandon("ops"), "already swapped"),
        (_job(DONE), Advance(DONE), "done"),
        (_job(ABANDONED), TakeOver("x", "x", 1.0), "abandoned"),
        (_job(SETTLE), Progressed("f1", WorkProgress(done=True)), "loading is over"),
        (_job(LOAD), Progressed("nope", WorkProgress(done=True)), "no work item"),
        (_job(SETTLE), Counted("catalog", "bogus", 1), "no count"),
    ],
)
def test_forbidden_transitions(before: Job, event: Event, message: str) -> None:
    """What the lifecycle forbids is refused with a reason, never applied."""
    with pytest.raises(JobTransitionError, match=message):
        step(before, event)


def test_progress_adds_pages_and_a_done_item_keeps_its_first_counts() -> None:
    """A segment's pages add up; a retried item that is done already changes nothing."""
    job = _job(LOAD)
    job = step(job, Progressed("f1", WorkProgress(False, {"pk": {"S": "a"}}, 10, 9, 1, 0)))
    job = step(job, Progressed("f1", WorkProgress(True, None, 5, 5, 0, 0)))
    assert job.progress["f1"] == WorkProgress(True, None, 15, 14, 1, 0)
    again = step(job, Progressed("f1", WorkProgress(True, None, 15, 0, 15, 0)))
    assert again.progress["f1"] == WorkProgress(True, None, 15, 14, 1, 0)
    assert job.items_left == ["f2"]


def test_counts_land_on_their_rebuild() -> None:
    """A settling step's count is kept per route, so a rerun skips what ran."""
    job = step(_job(SETTLE), Counted("catalog", "settled", 7))
    assert job.rebuilds[0].settled == 7


def test_the_fence() -> None:
    """A step's (id, epoch) must still name the stored job, and the job must not be abandoned."""
    job = _job(LOAD)
    assert fence(job, job.token) is job
    with pytest.raises(JobFencedError, match="taken over by other"):
        fence(step(job, TakeOver("other:2:bb", "other:2", 1.0)), job.token)
    with pytest.raises(JobFencedError, match="abandoned by ops"):
        fence(step(job, Abandon("ops")), job.token)
    with pytest.raises(JobFencedError, match="replaced by job catalog-new"):
        fence(dataclasses.replace(job, id="catalog-new"), job.token)
    with pytest.raises(JobFencedError, match="replaced by no job"):
        fence(None, job.token)


@pytest.mark.parametrize(
    ("holder", "heartbeat_at", "now", "pid_alive", "alive"),
    [
        ("other:7", 100.0, 130.0, False, True),  # another host, fresh lease
        ("other:7", 100.0, 161.0, True, False),  # another host, lease expired
        ("here:7", 100.0, 101.0, False, False),  # this host, the process is gone
        ("here:7", 100.0, 101.0, True, True),  # this host, the process runs
        ("here:7", 0.0, 101.0, True, False),  # released by a holder that stopped
    ],
)
def test_the_lease(
    holder: str, heartbeat_at: float, now: float, pid_alive: bool, alive: bool
) -> None:
    """A job's holder counts as running while its heartbeat is fresh and, on this host, its
    process exists."""
    job = _job(LOAD, holder=holder, heartbeat_at=heartbeat_at)
    assert holder_alive(job, now, "here", lambda _: pid_alive) is alive


def test_a_backfill_is_kept_beside_the_tables_rebuild() -> None:
    """A backfill builds no index: its record has a slot of its own, so a rebuild may run."""
    assert _job(LOAD).key == "catalog"
    assert _job(LOAD, kind="backfill").key == "catalog:backfill"
    stopped = describe(_job(LOAD, kind="backfill", heartbeat_at=0.0), 400.0, alive=False)
    assert "syncer backfill --table catalog --export s3://b/e" in stopped


def test_a_job_round_trips_through_json() -> None:
    """The record stored is the record read back."""
    job = step(_job(LOAD), Progressed("f1", WorkProgress(False, {"pk": {"S": "a"}}, 3, 3, 0, 0)))
    assert Job.from_json(job.to_json()) == job


def test_status_says_what_to_do_next() -> None:
    """A stopped job names the command that resumes it, and --abandon; after the swap only
    the rerun (its catch-up must run)."""
    stopped = describe(_job(SETTLE, heartbeat_at=0.0), 400.0, alive=False)
    assert "phase settle" in stopped
    assert "syncer reindex --table catalog --export s3://b/e" in stopped
    assert "--abandon" in stopped
    assert "started 5 min ago" in stopped
    catching_up = describe(_job(CATCH_UP), 400.0, alive=False)
    assert "finish its catch-up" in catching_up
    assert "--abandon" not in catching_up
    running = describe(_job(LOAD), 130.0, alive=True)
    assert "running" in running
