"""A rebuild's job as its steps hold it: claimed or resumed (``start_job``), attached to by a
step that carries its id (``attach_job``), every change a fenced conditional write
(``JobHandle.apply``), a heartbeat while a step runs (``JobHandle.holding``).

The lifecycle itself is pure (``syncer.core.jobs.step``); the store is ``syncer.sinks.jobs``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from syncer.config.environment import rebuild_kill_point
from syncer.core.jobs import (
    ABANDONED,
    FINISHED,
    HEARTBEAT_S,
    LOAD,
    Event,
    Heartbeat,
    Job,
    JobFencedError,
    JobRunningError,
    Progressed,
    Released,
    TakeOver,
    describe,
    fence,
    holder_alive,
    step,
)
from syncer.sinks.jobs import Stored
from syncer.sinks.ports import JobRecords, Sinks

log = logging.getLogger("syncer.commands.jobs")


def job_store(sinks: Sinks) -> JobRecords:
    """The jobs' records: the sinks' port, built once (``syncer-jobs`` checked once)."""
    return sinks.jobs


def this_holder() -> str:
    """This process: host:pid (a dead pid on this host ends its lease at once)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_owner() -> str:
    """A command run: host:pid:run, unique even for two runs in one process."""
    return f"{this_holder()}:{uuid.uuid4().hex[:6]}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(job: Job, now: float | None = None) -> bool:
    """Whether the job's holder may still be running (its lease)."""
    now = time.time() if now is None else now
    return holder_alive(job, now, socket.gethostname(), pid_alive)


class JobHandle:
    """One process's hold on a job: every change fenced by the job's (id, epoch)."""

    def __init__(self, store: JobRecords, job: Job) -> None:
        self.store = store
        self.job = job
        self.token = job.token
        self._lock = threading.Lock()

    def refresh(self) -> Job:
        """The job as stored now; ``JobFencedError`` if this handle no longer runs it."""
        stored = self.store.get(self.job.key)
        self.job = fence(None if stored is None else stored.job, self.token)
        return self.job

    def abandoned(self) -> bool:
        """Whether this job was abandoned (not taken over: a new owner goes on with it)."""
        stored = self.store.get(self.job.key)
        return stored is not None and stored.job.id == self.job.id and stored.job.phase == ABANDONED

    def apply(self, event: Event) -> Job:
        """``event`` applied to the stored job by a conditional write, if still ours."""

        def change(current: Stored | None) -> Job:
            job = fence(None if current is None else current.job, self.token)
            return step(job, event)

        with self._lock:
            before = self.job.phase
            self.job = self.store.update(self.job.key, change).job
        _maybe_kill(self.job, before, event)
        return self.job

    @contextlib.contextmanager
    def holding(self) -> Iterator[JobHandle]:
        """Heartbeats while the block runs; on an error, says whether the job was fenced (and
        releases the lease, so the next run need not wait for it to expire)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    self.apply(Heartbeat(this_holder(), time.time()))
                except JobFencedError:
                    return
                except Exception as error:  # noqa: BLE001 - the next beat or write tells
                    log.warning("job %s: heartbeat not written: %s", self.token[0], error)

        thread = threading.Thread(target=beat, name="job-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        except JobFencedError:
            raise
        except BaseException as error:
            try:
                self.refresh()
            except JobFencedError as fenced:
                raise fenced from error
            with contextlib.suppress(JobFencedError):
                self.apply(Released())
            raise
        finally:
            stop.set()
            thread.join()


def start_job(
    store: JobRecords,
    table: str,
    plan: Callable[[], Job],
    resumes: Callable[[Job], str | None],
    owner: str | None = None,
    *,
    replace_stopped: bool = False,
) -> tuple[JobHandle, bool]:
    """Claim a new job under ``table`` (a ``Job.key``; ``plan`` makes it), or resume the one
    its record names.

    A running job (its holder's lease alive) is refused, naming its kind, phase, owner and
    age; a stopped one is taken over (epoch + 1) if ``resumes`` accepts it (None), else
    replaced (``replace_stopped``: a backfill, which builds nothing to clean up) or refused
    with ``resumes``' reason. The same ``owner`` (a retried state machine step) just goes on.
    Returns the handle and whether the job was resumed.
    """
    owner = owner or new_owner()
    resumed = [False]

    def claim(current: Stored | None) -> Job:
        now = time.time()
        if current is None or current.job.phase in FINISHED:
            resumed[0] = False
            return plan()
        job = current.job
        resumed[0] = True
        if job.owner == owner:
            return step(job, Heartbeat(this_holder(), now))
        if alive(job, now):
            raise JobRunningError(
                f"a rebuild of {table!r} is already running: {describe(job, now, True)}"
            )
        mismatch = resumes(job)
        if mismatch and replace_stopped:
            resumed[0] = False
            return plan()
        if mismatch:
            raise JobRunningError(
                f"a stopped rebuild of {table!r} is not this one ({mismatch}): "
                f"{describe(job, now, False)}"
            )
        return step(job, TakeOver(owner, this_holder(), now))

    stored = store.update(table, claim)
    if resumed[0]:
        log.info("resuming job %s of %s at phase %s", stored.job.id, table, stored.job.phase)
    return JobHandle(store, stored.job), resumed[0]


def start_backfill_job(
    store: JobRecords, table: str, export_uri: str, work_items: tuple[str, ...]
) -> tuple[JobHandle, bool]:
    """Claim ``table``'s backfill job for ``export_uri``, or resume its stopped one."""
    owner = new_owner()

    def plan() -> Job:
        now = time.time()
        return Job(
            id=f"{table}-{uuid.uuid4().hex[:8]}",
            table=table,
            kind="backfill",
            owner=owner,
            epoch=1,
            phase=LOAD,  # a backfill prepares nothing
            started_at=now,
            heartbeat_at=now,
            holder=this_holder(),
            export_uri=export_uri,
            work_items=work_items,
        )

    def resumes(job: Job) -> str | None:
        return None if job.export_uri == export_uri else f"it applies {job.export_uri}"

    return start_job(store, f"{table}:backfill", plan, resumes, owner, replace_stopped=True)


def attach_job(store: JobRecords, table: str, token: tuple[str, int]) -> JobHandle:
    """A step's handle on the job it was handed (``JobFencedError`` if no longer its)."""
    stored = store.get(table)
    job = fence(None if stored is None else stored.job, token)
    return JobHandle(store, job)


def _maybe_kill(job: Job, before: str, event: Event) -> None:
    """TEST ONLY (``SYNCER_TEST_KILL_AT``, config/environment.py): SIGKILL this process as the
    job enters the named phase, or once N work items are done (``load:N``)."""
    point = rebuild_kill_point()
    if not point:
        return
    phase, _, count = point.partition(":")
    if count and isinstance(event, Progressed) and job.phase == phase:
        if sum(1 for p in job.progress.values() if p.done) >= int(count):
            os.kill(os.getpid(), signal.SIGKILL)
    elif not count and job.phase == phase and before != phase:
        os.kill(os.getpid(), signal.SIGKILL)
