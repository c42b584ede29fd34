"""A rebuild job as a value, and its lifecycle as the pure ``step(job, event) -> job``.

One job per rebuild (``syncer reindex``, ``--export``, ``--workers``, the reindex state
machine): the table, the kind, the source, the indices it builds, its phase, every work item's
progress, and who owns it with a fencing ``epoch``. ``syncer.sinks.jobs`` stores it in
OpenSearch with conditional writes; docs/ordering.md ("The rebuild job") draws the lifecycle.

    prepare -> load -> settle -> block -> swap -> catch_up -> done
        \\________\\________\\_______\\________/ ----> abandoned (only before the swap)

A backfill (``syncer backfill``, an export applied to the live index in place) is a job too,
kept beside the table's rebuild (``Job.key``): it builds no index, so its phases are
``load -> done``.

A step that finds the record changed under it (another epoch, another job, abandoned) is
fenced: ``JobFencedError``. Every function here is pure; times are passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncer.errors import SyncerError

PREPARE, LOAD, SETTLE, BLOCK, SWAP, CATCH_UP, DONE, ABANDONED = (
    "prepare",
    "load",
    "settle",
    "block",
    "swap",
    "catch_up",
    "done",
    "abandoned",
)
PHASES = (PREPARE, LOAD, SETTLE, BLOCK, SWAP, CATCH_UP, DONE)
FINISHED = frozenset({DONE, ABANDONED})
KINDS = ("scan", "export", "backfill")
# A job whose holder has not written for this long is taken over by the next run.
LEASE_S = 60.0
# How often a running holder writes its heartbeat (well inside the lease).
HEARTBEAT_S = 10.0


class JobFencedError(SyncerError):
    """This process's job was abandoned, taken over or replaced: it must change nothing."""


class JobRunningError(SyncerError):
    """Another rebuild of the table is running: a second one is refused."""


class JobTransitionError(SyncerError):
    """A phase change the lifecycle does not allow (a bug, or a record edited by hand)."""


@dataclass(frozen=True)
class Rebuild:
    """One route's index: its alias, the index being built and the one it replaces, and what
    each settling step did (None until it ran, so a rerun does not run it twice)."""

    alias: str
    new_index: str
    old_index: str | None
    tombstones_carried: int | None = None
    settled: int | None = None  # absent reads tombstoned (scan) / live documents carried (export)
    absent_tombstoned: int | None = None
    caught_up: int | None = None


@dataclass(frozen=True)
class WorkProgress:
    """A work item (an export file, a scan segment): done, or where it goes on, and its counts."""

    done: bool = False
    last_key: dict[str, Any] | None = None  # a scan segment's resume point
    items: int = 0
    written: int = 0
    already_newer: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Job:
    """The record every participant of one rebuild reads and conditionally writes."""

    id: str
    table: str
    kind: str  # scan | export
    owner: str  # who runs it: host:pid:run of a command, or state-machine:<execution>
    epoch: int  # raised by every take-over and by abandon: the fencing token
    phase: str
    started_at: float  # when the reindex aliases appeared: the catch-up's lower bound
    heartbeat_at: float  # 0: released by a holder that stopped
    holder: str = ""  # host:pid of the process that last wrote the heartbeat
    rebuilds: tuple[Rebuild, ...] = ()
    export_uri: str = ""
    table_arn: str = ""
    export_time_ms: int = 0
    read_version: Mapping[str, Any] = field(default_factory=dict)
    item_count: int = 0
    segments: int = 0
    work_items: tuple[str, ...] = ()  # every work item's key, in order
    progress: Mapping[str, WorkProgress] = field(default_factory=dict)
    delete_old: bool = False
    message: str = ""  # why the job stopped (abandoned by whom)

    @property
    def key(self) -> str:
        """Where the record is kept: the table's rebuild slot, or its backfill slot."""
        return f"{self.table}:backfill" if self.kind == "backfill" else self.table

    @property
    def token(self) -> tuple[str, int]:
        """What a step carries to prove it still runs this job: (id, epoch)."""
        return (self.id, self.epoch)

    @property
    def targets(self) -> dict[str, str]:
        """Route alias -> the new concrete index."""
        return {rebuild.alias: rebuild.new_index for rebuild in self.rebuilds}

    @property
    def old_indices(self) -> dict[str, str | None]:
        return {rebuild.alias: rebuild.old_index for rebuild in self.rebuilds}

    @property
    def items_left(self) -> list[str]:
        return [key for key in self.work_items if not self.progress.get(key, WorkProgress()).done]

    def to_json(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw["rebuilds"] = [dataclasses.asdict(rebuild) for rebuild in self.rebuilds]
        raw["work_items"] = list(self.work_items)
        raw["progress"] = {key: dataclasses.asdict(p) for key, p in self.progress.items()}
        raw["read_version"] = dict(self.read_version)
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Job:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in raw.items() if name in known}
        values["rebuilds"] = tuple(Rebuild(**r) for r in raw.get("rebuilds", ()))
        values["work_items"] = tuple(raw.get("work_items", ()))
        values["progress"] = {k: WorkProgress(**p) for k, p in raw.get("progress", {}).items()}
        return cls(**values)


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advance:
    """The phase ``done_with`` is finished: move to the next one."""

    done_with: str


@dataclass(frozen=True)
class Progressed:
    """A work item went on (a page of a segment, or a whole file): its counts are added, its
    ``done`` and ``last_key`` replace the saved ones."""

    key: str
    progress: WorkProgress


@dataclass(frozen=True)
class Counted:
    """A settling step of one rebuild ran: its count, so a rerun skips it."""

    alias: str
    what: str  # tombstones_carried | settled | absent_tombstoned | caught_up
    count: int


@dataclass(frozen=True)
class Heartbeat:
    holder: str
    now: float


@dataclass(frozen=True)
class Released:
    """The holder stopped (an error): the next run may take over at once."""


@dataclass(frozen=True)
class TakeOver:
    """Another run resumes the job: it becomes the owner, and the epoch fences the old one."""

    owner: str
    holder: str
    now: float


@dataclass(frozen=True)
class Abandon:
    who: str


Event = Advance | Progressed | Counted | Heartbeat | Released | TakeOver | Abandon
_COUNTS = frozenset({"tombstones_carried", "settled", "absent_tombstoned", "caught_up"})


def step(job: Job, event: Event) -> Job:
    """The job after ``event``; ``JobTransitionError`` for what the lifecycle forbids."""
    if job.phase in FINISHED and not isinstance(event, Heartbeat | Released):
        raise JobTransitionError(f"job {job.id} is {job.phase}: nothing changes it any more")
    if isinstance(event, Advance):
        if event.done_with != job.phase:
            raise JobTransitionError(f"job {job.id} is in phase {job.phase}, not {event.done_with}")
        if job.phase == LOAD and job.items_left:
            left = job.items_left
            raise JobTransitionError(
                f"job {job.id}: {len(left)} work item(s) not loaded yet, e.g. {left[0]}"
            )
        if job.kind == "backfill":
            return dataclasses.replace(job, phase=DONE)
        return dataclasses.replace(job, phase=PHASES[PHASES.index(job.phase) + 1])
    if isinstance(event, Progressed):
        if job.phase != LOAD:
            raise JobTransitionError(f"job {job.id} is in phase {job.phase}: loading is over")
        if event.key not in job.work_items:
            raise JobTransitionError(f"job {job.id} has no work item {event.key!r}")
        saved = job.progress.get(event.key, WorkProgress())
        if saved.done:
            return job  # a retried item: its first run's counts stand
        new = event.progress
        added = WorkProgress(
            new.done,
            new.last_key,
            saved.items + new.items,
            saved.written + new.written,
            saved.already_newer + new.already_newer,
            saved.rejected + new.rejected,
        )
        return dataclasses.replace(job, progress={**job.progress, event.key: added})
    if isinstance(event, Counted):
        if event.what not in _COUNTS:
            raise JobTransitionError(f"no count {event.what!r}")
        counts: dict[str, Any] = {event.what: event.count}
        rebuilds = tuple(
            dataclasses.replace(r, **counts) if r.alias == event.alias else r for r in job.rebuilds
        )
        return dataclasses.replace(job, rebuilds=rebuilds)
    if isinstance(event, Heartbeat):
        return dataclasses.replace(job, holder=event.holder, heartbeat_at=event.now)
    if isinstance(event, Released):
        return dataclasses.replace(job, heartbeat_at=0.0)
    if isinstance(event, TakeOver):
        return dataclasses.replace(
            job,
            owner=event.owner,
            holder=event.holder,
            heartbeat_at=event.now,
            epoch=job.epoch + 1,
        )
    if job.phase in (CATCH_UP,):
        raise JobTransitionError(
            f"job {job.id} already swapped its aliases: it cannot be abandoned, only finished "
            f"(run `syncer reindex --table {job.table}` again to finish its catch-up)"
        )
    return dataclasses.replace(
        job, phase=ABANDONED, epoch=job.epoch + 1, message=f"abandoned by {event.who}"
    )


def fence(job: Job | None, token: tuple[str, int]) -> Job:
    """``job`` if ``token`` (a step's (id, epoch)) still runs it; else ``JobFencedError``."""
    job_id, epoch = token
    if job is None or job.id != job_id:
        other = "no job" if job is None else f"job {job.id} ({job.kind}, {job.phase})"
        raise JobFencedError(f"job {job_id} was replaced by {other}: this step changes nothing")
    if job.phase == ABANDONED:
        raise JobFencedError(f"job {job_id} was {job.message or 'abandoned'}: this step stops")
    if job.epoch != epoch:
        raise JobFencedError(
            f"job {job_id} was taken over by {job.owner} (epoch {job.epoch}, this step holds "
            f"{epoch}): this step stops"
        )
    return job


def holder_alive(job: Job, now: float, host: str, pid_alive: Any, lease_s: float = LEASE_S) -> bool:
    """Whether the job's holder may still be running: its lease is fresh, and when it runs on
    this host, its process exists (``pid_alive(pid)``)."""
    if job.phase in FINISHED or now - job.heartbeat_at >= lease_s:
        return False
    holder_host, _, pid = job.holder.partition(":")
    pid = pid.split(":", 1)[0]
    if holder_host == host and pid.isdigit():
        return bool(pid_alive(int(pid)))
    return True


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def describe(job: Job, now: float, alive: bool) -> str:
    """One job for ``syncer reindex --status`` and for a refused start: kind, phase, progress,
    owner, age, and what to do next."""
    done = len(job.work_items) - len(job.items_left)
    source = f" from {job.export_uri}" if job.export_uri else f" ({job.segments} segments)"
    text = (
        f"{job.table}: {job.kind} job {job.id}{source}, phase {job.phase}, "
        f"{done}/{len(job.work_items)} work items loaded, owner {job.owner}, "
        f"started {age_text(now - job.started_at)} ago"
    )
    if job.phase in FINISHED:
        return text + (f" ({job.message})" if job.message else "")
    beat = "released" if job.heartbeat_at == 0 else f"{age_text(now - job.heartbeat_at)} ago"
    text += f", last heartbeat {beat}"
    if job.kind == "backfill":
        rerun = f"syncer backfill --table {job.table} --export {job.export_uri}"
        if alive:
            return text + "; running: wait for it"
        return (
            text + f"; stopped: run `{rerun}` to resume (a backfill of another export replaces it)"
        )
    rerun = f"syncer reindex --table {job.table}" + (
        f" --export {job.export_uri}" if job.export_uri else ""
    )
    if alive:
        return text + f"; running: wait for it, or `syncer reindex --table {job.table} --abandon`"
    if job.phase == CATCH_UP:
        return text + f"; stopped after its swap: run `{rerun}` to finish its catch-up"
    return (
        text + f"; stopped: run `{rerun}` to resume at phase {job.phase}, "
        f"or `syncer reindex --table {job.table} --abandon`"
    )
