"""The crash matrix (issue 24): a rebuild SIGKILLed at each phase, the stream flowing through
the handler meanwhile, then run again from another directory (or the state machine's
execution redriven), or abandoned and run again. After each: the index equals the table,
nothing deleted comes back, and no write block or reindex alias is left. A killed run leaves
no process of it running (a `--workers` pool's workers end with their parent).

The kill is the test-only ``SYNCER_TEST_KILL_AT`` (config/environment.py): the rebuild, in a
child process, SIGKILLs itself as its job enters the named phase (``load:1``: once one work
item is loaded).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from syncer.sinks.build import aws_client
from tests.exportfiles import full_line, split, write_export
from tests.integration.conftest import Stack, wait_until
from tests.integration.machine import run_machine
from tests.integration.rebuilds import catalog_item, no_rebuild_left, table_items

pytestmark = pytest.mark.integration

KILL_POINTS = ["load:1", "settle", "block", "swap", "catch_up"]
SYNCER = str(Path(sys.executable).parent / "syncer")


_item = catalog_item


def _inserts_of(stack: Stack, pk: str) -> list[dict[str, Any]]:
    return [
        r
        for r in stack.stream_records()
        if r["dynamodb"]["Keys"]["pk"]["S"] == pk and r["eventName"] == "INSERT"
    ]


def _run(
    command: list[str], cwd: Path, kill_at: str = "", marker: str = ""
) -> subprocess.CompletedProcess[str]:
    """``command`` run to its end (or its SIGKILL at ``kill_at``); ``marker`` tags the
    environment of the command and of every process it starts (``_left_running``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCER_TEST_KILL_AT", _MARK)}
    if kill_at:
        env["SYNCER_TEST_KILL_AT"] = kill_at
    if marker:
        env[_MARK] = marker
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )


_MARK = "SYNCER_TEST_CRASH_RUN"


def _left_running(marker: str) -> set[int]:
    """The live processes (not zombies) whose environment carries ``marker``: what a killed
    run left behind, pool workers included (they inherit the environment)."""
    needle = f"{_MARK}={marker}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ and state != "Z":
            found.add(int(entry.name))
    return found


class _Scenario:
    """A table with a deleted item (its tombstone in the index), and the rebuild's command."""

    def __init__(self, stack: Stack, kind: str) -> None:
        self.stack = stack
        self.kind = kind
        for number in range(16):
            stack.put(_item(f"i{number}", number))
        stack.put(_item("gone", 1))
        stack.deliver()
        stack.delete("gone", "v1")
        stack.deliver()
        self.replays = _inserts_of(stack, "gone")
        self.export_uri = ""
        if kind in ("export", "export-workers"):
            s3 = aws_client("s3")
            lines = [full_line(item) for item in table_items(stack)]
            self.export_uri = write_export(
                s3, f"exports-{uuid.uuid4().hex[:12]}", split(lines, 3), table=stack.table
            ).uri
        self.late: list[dict[str, Any]] = []

    def command(self) -> list[str]:
        if self.kind == "scan":
            return [*self.abandon_command()[:-1], "--segments", "3"]
        if self.kind == "workers":  # the scan's segments in a pool of processes
            return [*self.abandon_command()[:-1], "--segments", "3", "--workers", "2"]
        if self.kind == "export-workers":  # the export's files in a pool of processes
            return [*self.abandon_command()[:-1], "--export", self.export_uri, "--workers", "2"]
        return [*self.abandon_command()[:-1], "--export", self.export_uri]

    def abandon_command(self) -> list[str]:
        config = str(self.stack.config_path)
        return [SYNCER, "reindex", "--config", config, "--table", self.stack.table, "--abandon"]

    def killed_at(self, kill_at: str, where: Path) -> None:
        """The rebuild, SIGKILLed as it enters ``kill_at``; the stream flows meanwhile. No
        process it started (a pool's worker) goes on running after it."""
        marker = uuid.uuid4().hex
        _killed(_run(self.command(), where / "first", kill_at, marker))
        try:
            wait_until(lambda: not _left_running(marker), timeout_s=5.0)
        finally:
            for pid in _left_running(marker):
                os.kill(pid, signal.SIGKILL)
        self.stream_while_dead()

    def rerun_elsewhere(self, where: Path) -> subprocess.CompletedProcess[str]:
        rerun = _run(self.command(), where / "elsewhere")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        return rerun

    def stream_while_dead(self) -> None:
        """Changes the handler delivers while the rebuild is down: one new item, one changed,
        one deleted. A batch that meets the old index's write block fails and is retried."""
        self.stack.put(_item("late", 77))
        self.stack.put(_item("i3", 333))
        self.stack.delete("i4", "v1")
        self.replays += _inserts_of(self.stack, "i4")
        self.late = self.stack.new_records()
        self.stack.deliver()

    def check(self) -> None:
        stack = self.stack
        stack.invoke(self.late)  # Lambda retries the batches that failed meanwhile
        assert stack.invoke(self.late) == {"batchItemFailures": []}
        assert stack.indexed() == stack.scanned()
        stack.invoke(self.replays)  # old INSERTs of deleted items, delivered again
        assert "gone|v1" not in stack.indexed()
        assert "i4|v1" not in stack.indexed()
        assert stack.indexed() == stack.scanned()
        no_rebuild_left(stack)


def _killed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr


# A `--workers` run killed while its pool loads: its workers end with it (issue 24, defect
# 13), so the rerun is the only writer; `killed_at` checks that none is left running.
RERUN_CASES = [
    *((kind, kill_at) for kind in ("scan", "export", "workers") for kill_at in KILL_POINTS),
    ("export-workers", "load:1"),
]


@pytest.mark.parametrize(("kind", "kill_at"), RERUN_CASES)
def test_killed_then_rerun_from_another_directory(
    stack: Stack, tmp_path: Path, kind: str, kill_at: str
) -> None:
    """SIGKILL at the phase, the stream flows, a rerun elsewhere resumes and finishes."""
    scenario = _Scenario(stack, kind)
    scenario.killed_at(kill_at, tmp_path)
    rerun = scenario.rerun_elsewhere(tmp_path)
    assert f"-> {stack.index}-000002" in rerun.stdout
    scenario.check()


# Abandoning after a `--workers` run was killed while its pool loaded: no worker of it is left
# to write into the dropped index's successor.
ABANDON_CASES = [
    *(
        (kind, kill_at)
        for kind in ("scan", "export")
        for kill_at in KILL_POINTS
        if kill_at != "catch_up"
    ),
    ("workers", "load:1"),
    ("export-workers", "load:1"),
]


@pytest.mark.parametrize(("kind", "kill_at"), ABANDON_CASES)
def test_killed_then_abandoned_then_rerun(
    stack: Stack, tmp_path: Path, kind: str, kill_at: str
) -> None:
    """SIGKILL at the phase, --abandon (fence, then drop), a fresh rebuild inherits nothing."""
    scenario = _Scenario(stack, kind)
    scenario.killed_at(kill_at, tmp_path)
    abandoned = _run(scenario.abandon_command(), tmp_path / "ops")
    assert abandoned.returncode == 0, abandoned.stdout + abandoned.stderr
    assert "fenced" in abandoned.stdout
    scenario.rerun_elsewhere(tmp_path)
    scenario.check()


def test_a_job_that_swapped_cannot_be_abandoned_only_finished(stack: Stack, tmp_path: Path) -> None:
    """Killed in its catch-up, the job refuses --abandon (the catch-up must run) and says so."""
    scenario = _Scenario(stack, "scan")
    _killed(_run(scenario.command(), tmp_path / "first", "catch_up"))
    abandoned = _run(scenario.abandon_command(), tmp_path / "ops")
    assert abandoned.returncode == 1
    assert "finish its catch-up" in abandoned.stdout + abandoned.stderr
    scenario.stream_while_dead()
    assert _run(scenario.command(), tmp_path / "elsewhere").returncode == 0
    scenario.check()


@pytest.mark.parametrize("kill_at", KILL_POINTS)
@pytest.mark.parametrize("then", ["redrive", "cli"])
def test_the_state_machine_killed_in_a_step(
    stack: Stack, tmp_path: Path, kill_at: str, then: str
) -> None:
    """A step's container dies at the phase; the execution is redriven (the same execution:
    its prepare resumes its job, loaded files are not loaded again), or the CLI finishes it
    from another machine."""
    scenario = _Scenario(stack, "export")
    execution = f"arn:aws:states:us-east-1:1:execution:reindex:{uuid.uuid4().hex[:8]}"
    execution_input = {"table": stack.table, "export_uri": scenario.export_uri}
    command = [sys.executable, "-m", "tests.integration.machine", json.dumps(execution_input)]
    repo = Path(__file__).resolve().parents[2]
    env_cwd = repo  # the child imports tests.*
    _killed(_run([*command, execution], env_cwd, kill_at))
    scenario.stream_while_dead()
    if then == "redrive":
        output = run_machine(aws_client("s3"), execution_input, execution)
        assert "absent_tombstoned" in output
    else:
        scenario.rerun_elsewhere(tmp_path)
    scenario.check()


def test_a_killed_backfill_resumes_from_another_directory(stack: Stack, tmp_path: Path) -> None:
    """`syncer backfill` killed after one of three files: its job (not a local file) lets a
    rerun elsewhere apply only the rest; the stream's later change stays newest."""
    for number in range(12):
        stack.put(_item(f"b{number}", number))
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in stack.new_records())
    lines = [full_line(item) for item in table_items(stack)]
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    uri = write_export(aws_client("s3"), bucket, split(lines, 3), table=stack.table).uri
    command = [SYNCER, "backfill", "--config", str(stack.config_path), "--table", stack.table]
    command += ["--export", uri]
    _killed(_run(command, tmp_path / "first", "load:1"))
    stack.put(_item("b5", 555))  # a change the stream delivers meanwhile
    stack.deliver()

    rerun = _run(command, tmp_path / "elsewhere")

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "(1 loaded before)" in rerun.stdout
    assert not list((tmp_path / "first").iterdir())
    assert stack.indexed()["b5|v1"]["price"] == 555
    assert stack.indexed() == stack.scanned()
