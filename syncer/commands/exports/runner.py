"""The local runner: the work items (export files, scan segments) not done yet, inline or in a
pool of processes with their own clients, each one's counts handed to ``on_done`` (its job
record's progress, a rebuild's or a backfill's) once it is loaded; a pool's workers end with
the process that started them."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from syncer.commands.exports.job import ExportJob, FileCounts
from syncer.commands.exports.load import load_file, load_segment
from syncer.commands.exports.prepare import s3_client
from syncer.config import Config
from syncer.core.exports import DataFile
from syncer.sinks.ports import Sinks

_worker_sinks: tuple[Config, Sinks, Any] | None = None
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_WATCH_INTERVAL_S = 0.5


def _init_worker(config: Config, parent_pid: int | None = None) -> None:
    """A pool process's own clients (none crosses a process boundary); it dies with its parent."""
    global _worker_sinks
    from syncer.sinks.build import build_sinks

    if parent_pid is not None:
        stop_with_parent(parent_pid)
    _worker_sinks = (config, build_sinks(config), s3_client())


def stop_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (the process that started it) dies.

    A parent killed with SIGKILL cannot stop its pool, and an orphaned worker would go on
    writing into a rebuild that was abandoned or is being rerun. On Linux the kernel sends
    SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread
    also checks the parent every ``PARENT_WATCH_INTERVAL_S`` and exits the process when it
    is gone (the worker's writes are idempotent and its item is not counted as done).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_WATCH_INTERVAL_S)
    os._exit(1)  # no cleanup: the parent that would receive it is gone


WorkItem = Callable[[Config, Sinks, Any, Mapping[str, Any], DataFile, int], FileCounts]


def _run_in_worker(
    work: WorkItem, job: Mapping[str, Any], data_file: DataFile, page_size: int
) -> FileCounts:
    if _worker_sinks is None:
        raise AssertionError("worker process without clients")
    config, sinks, s3 = _worker_sinks
    return work(config, sinks, s3, job, data_file, page_size)


def _load_export_file(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: Mapping[str, Any],
    data_file: DataFile,
    page_size: int,
) -> FileCounts:
    return load_file(config, sinks, s3, ExportJob.from_json(job), data_file, page_size)


def _segment_item(segment: int) -> DataFile:
    """A scan segment as a work item of ``run_work_items`` (its key names it in the progress)."""
    return DataFile(f"segment-{segment}", 0, "")


def _load_segment_item(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: Mapping[str, Any],
    data_file: DataFile,
    page_size: int,
) -> FileCounts:
    segment = int(data_file.key.removeprefix("segment-"))
    return load_segment(config, sinks, ExportJob.from_json(job), segment, page_size)


def run_work_items(
    config: Config,
    sinks: Sinks,
    s3: Any,
    work: WorkItem,
    job: Mapping[str, Any],
    files: Iterable[DataFile],
    done_before: Collection[str],
    on_done: Callable[[DataFile, FileCounts], None],
    *,
    workers: int,
    page_size: int,
    on_progress: Callable[[int], None],
) -> FileCounts:
    """Every file not in ``done_before``, through ``work``; ``on_done`` hears of each file once
    it is loaded (it saves the progress; raising there stops the run).

    One worker runs in this process (progress per page); more run in a pool of processes
    (progress per file). The first file that fails for good stops the run; the others in
    flight finish and are saved, so a rerun resumes with what is left.
    """
    pending = [data_file for data_file in files if data_file.key not in done_before]
    totals = FileCounts()

    def done(data_file: DataFile, counts: FileCounts) -> None:
        nonlocal totals
        totals = totals + counts
        on_done(data_file, counts)

    if workers <= 1:
        for data_file in pending:
            done(data_file, work(config, sinks, s3, job, data_file, page_size))
            on_progress(0)
        return totals
    failure: BaseException | None = None
    context = multiprocessing.get_context("spawn")  # no parent's threads or sockets in a child
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(config, os.getpid())
    ) as pool:
        running: dict[Future[FileCounts], DataFile] = {}
        queue = list(reversed(pending))
        while queue or running:
            while queue and len(running) < workers and failure is None:
                data_file = queue.pop()
                running[pool.submit(_run_in_worker, work, job, data_file, page_size)] = data_file
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                data_file = running.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                counts = future.result()
                done(data_file, counts)
                on_progress(counts.items)
    if failure is not None:
        raise failure
    return totals
