"""The rebuild job on the real services: killed, rerun from elsewhere, abandoned, raced.

Each test drives the `syncer reindex` command (or the state machine's handler) the way an
operator would, with the stream flowing through the Lambda handler in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncer.cli import main
from syncer.commands import reindex
from syncer.commands.exports import load as export_load
from syncer.sinks.build import aws_client
from syncer.sinks.exports import ExportReader
from syncer.sinks.search import reindex_alias
from tests.exportfiles import full_line, split, write_export
from tests.integration.conftest import Stack
from tests.integration.rebuilds import catalog_item, no_rebuild_left, table_items

pytestmark = pytest.mark.integration


_item = catalog_item


@pytest.fixture
def s3() -> Any:
    return aws_client("s3")


@pytest.fixture(autouse=True)
def quick_file_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_load, "FILE_RETRY_BACKOFF_S", 0.0)


_table_items = table_items


def _export(stack: Stack, s3: Any, files: int = 3) -> Any:
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    lines = [full_line(i) for i in _table_items(stack)]
    return write_export(s3, bucket, split(lines, files), table=stack.table)


def _syncer(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(
        main, [args[0], "--config", str(stack.config_path), *args[1:]], catch_exceptions=False
    )


_no_rebuild_left = no_rebuild_left


def _crash_on_file(monkeypatch: pytest.MonkeyPatch, number: int, before: Any = None) -> None:
    """The process dies (KeyboardInterrupt, which nothing catches) as file ``number`` starts."""
    real = ExportReader.read_pages
    calls = [0]

    def read_pages(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if before is not None and calls[0] == 1:
            before()
        if calls[0] == number:
            raise KeyboardInterrupt("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ExportReader, "read_pages", read_pages)


def test_abandon_after_a_killed_export_reindex_then_a_rerun_loses_nothing(
    stack: Stack, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 1: killed after one of three files, abandoned, run again: every item is searchable
    (the abandoned job's progress is not inherited by the new index). The old index never saw
    the items (a first build from an export), so only the export can bring them."""
    for number in range(30):
        stack.put(_item(f"k{number}", number))
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in stack.new_records())
    export = _export(stack, s3)
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as crash:
        _crash_on_file(crash, 2)
        killed = _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri)
        assert killed.exit_code != 0

    abandoned = _syncer(stack, "reindex", "--table", stack.table, "--abandon")
    assert abandoned.exit_code == 0, abandoned.output
    rerun = _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri)

    assert rerun.exit_code == 0, rerun.output
    assert stack.indexed() == stack.scanned()
    assert len(stack.indexed()) == 30
    _no_rebuild_left(stack)


def test_a_rerun_after_death_during_the_catch_up_resumes_the_catch_up(
    stack: Stack, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: a change that reached only the old index (a batch that found no reindex alias)
    is brought over by the catch-up after the swap, also when the first run died in it."""
    for number in range(12):
        stack.put(_item(f"c{number}", number))
    stack.deliver()
    export = _export(stack, s3, files=2)
    client = stack.sinks.opensearch
    monkeypatch.chdir(tmp_path)

    def change_reaching_the_old_index_only() -> None:
        (building,) = client.indices.get_alias(name=reindex_alias(stack.index))
        client.indices.delete_alias(index=building, name=reindex_alias(stack.index))
        stack.put(_item("late", 99))
        stack.deliver()
        client.indices.put_alias(index=building, name=reindex_alias(stack.index))

    def die(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt("killed in the catch-up")

    with monkeypatch.context() as crash:
        _crash_on_file(crash, 99, before=change_reaching_the_old_index_only)
        crash.setattr(reindex, "catch_up", die)
        killed = _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri)
        assert killed.exit_code != 0
        assert "Aborted" in killed.output, killed.output
    assert sorted(client.indices.get_alias(name=stack.index)) == [f"{stack.index}-000002"]

    other_directory = tmp_path / "elsewhere"
    other_directory.mkdir()
    monkeypatch.chdir(other_directory)
    rerun = _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri)

    assert rerun.exit_code == 0, rerun.output
    assert sorted(client.indices.get_alias(name=stack.index)) == [f"{stack.index}-000002"]
    assert stack.indexed()["late|v1"]["price"] == 99
    assert stack.indexed() == stack.scanned()
    _no_rebuild_left(stack)


def test_two_reindexes_of_one_table_started_together_one_refuses(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 7: of two reindexes started at once, one runs and the other refuses, naming the
    running job; one new index, one swap."""
    for number in range(20):
        stack.put(_item(f"r{number}", number))
    stack.deliver()
    syncer = str(Path(sys.executable).parent / "syncer")
    runs = []
    for name in ("a", "b"):
        directory = tmp_path / name
        directory.mkdir()
        command = [syncer, "reindex", "--config", str(stack.config_path), "--table", stack.table]
        runs.append(
            subprocess.Popen(
                command,
                cwd=directory,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=os.environ.copy(),
            )
        )
    outcomes = [(run.wait(timeout=120), run.communicate()[0]) for run in runs]

    assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
    refused = next(output for code, output in outcomes if code == 1)
    assert "already running" in refused
    assert "scan" in refused
    client = stack.sinks.opensearch
    assert sorted(client.indices.get(index=f"{stack.index}-0*")) == [
        f"{stack.index}-000001",
        f"{stack.index}-000002",
    ]
    assert stack.indexed() == stack.scanned()
    _no_rebuild_left(stack)


def test_abandon_while_a_reindex_runs_leaves_nothing_it_could_resurrect(
    stack: Stack, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 6: --abandon while an export reindex loads: the running one cannot re-create the
    dropped index by name (it writes through the reindex alias, require_alias), stops fenced,
    and never swaps; a replayed INSERT of a deleted item stays refused by its tombstone."""
    for number in range(12):
        stack.put(_item(f"a{number}", number))
    stack.put(_item("gone", 1))
    stack.deliver()
    export = _export(stack, s3, files=3)
    insert_of_gone = [
        r for r in stack.stream_records() if r["dynamodb"]["Keys"]["pk"]["S"] == "gone"
    ]
    stack.delete("gone", "v1")
    stack.deliver()
    client = stack.sinks.opensearch
    (old_index,) = client.indices.get_alias(name=stack.index)
    (table,) = stack.config.tables
    real = ExportReader.read_pages
    calls = [0]

    def abandon_during_the_load(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:  # another operator abandons it while file 2 starts
            reindex.abandon(stack.sinks, table, tmp_path / "state.json")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ExportReader, "read_pages", abandon_during_the_load)
    monkeypatch.chdir(tmp_path)

    outcome = _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri)

    assert outcome.exit_code == 1, outcome.output
    assert "abandoned by" in outcome.output
    assert not client.indices.exists(index=f"{stack.index}-000002")
    assert sorted(client.indices.get_alias(name=stack.index)) == [old_index]
    _no_rebuild_left(stack)
    stack.invoke(insert_of_gone[:1])
    assert "gone|v1" not in stack.indexed()
    assert stack.indexed() == stack.scanned()


def test_state_machine_steps_retried_on_fresh_containers_twice_and_finished_twice(
    stack: Stack, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 11 and Step Functions' semantics: every step run again with the same input, on
    the same container and on a fresh one (no /tmp, no cached clients), twice in a row; the
    prepare of one execution resumes its job; finish twice changes nothing the second time."""
    from syncer import reindex_handler

    for number in range(9):
        stack.put(_item(f"m{number}", number))
    stack.put(_item("ghost", 1))
    stack.deliver()
    ghost_insert = [
        r for r in stack.stream_records() if r["dynamodb"]["Keys"]["pk"]["S"] == "ghost"
    ]
    export = _export(stack, s3, files=3)
    stack.delete("ghost", "v1")
    stack.deliver()
    containers = iter(range(100))

    def fresh_container() -> None:
        reindex_handler.reset_clients()
        # the release before jobs kept prepare's state in /tmp: a fresh container has none
        monkeypatch.setattr(
            reindex_handler, "STATE_DIR", tmp_path / f"c{next(containers)}", raising=False
        )
        (tmp_path / "c0").mkdir(exist_ok=True)

    def run(event: dict[str, Any]) -> Any:
        results = []
        for fresh in (False, True, True):
            if fresh:
                fresh_container()
            results.append(reindex_handler.lambda_handler(event, None))
        return results

    fresh_container()
    prepare = {
        "step": "prepare",
        "execution": "arn:aws:states:us-east-1:1:execution:m:e1",
        "input": {"table": stack.table, "export_uri": export.uri},
        "max_concurrency": "3",
    }
    prepared = run(prepare)
    assert prepared[0]["job"] == prepared[1]["job"] == prepared[2]["job"]
    job = prepared[0]["job"]
    assert set(job) == {"id", "epoch"}  # only the job's id (and its fence) goes between steps
    manifest = s3.get_object(**prepared[0]["manifest"])["Body"].read().decode()
    for line in manifest.splitlines():
        counts = run({"step": "load", "job": job, "file": json.loads(line)})
        assert counts[0] == counts[1] == counts[2]
    finished = run({"step": "finish", "job": job})
    assert finished[0] == finished[1] == finished[2]
    reindex_handler.reset_clients()

    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [
        f"{stack.index}-000002"
    ]
    _no_rebuild_left(stack)
    assert stack.indexed() == stack.scanned()
    stack.invoke(ghost_insert[:1])
    assert "ghost|v1" not in stack.indexed()


def test_status_names_each_job_and_what_to_do(
    stack: Stack, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reindex --status` shows a stopped job's kind, phase, progress, owner, age and the
    command that resumes it; after the rerun, that it is done."""
    for number in range(6):
        stack.put(_item(f"s{number}", number))
    stack.deliver()
    export = _export(stack, s3, files=3)
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as crash:
        _crash_on_file(crash, 3)
        assert _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri).exit_code

    status = _syncer(stack, "reindex", "--status", "--table", stack.table)

    assert status.exit_code == 0, status.output
    assert f"{stack.table}: export job" in status.output
    assert "phase load, 2/3 work items loaded" in status.output
    assert f"run `syncer reindex --table {stack.table} --export {export.uri}`" in status.output
    assert _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri).exit_code == 0
    done = _syncer(stack, "reindex", "--status", "--table", stack.table)
    assert "phase done, 3/3 work items loaded" in done.output


def test_a_step_of_a_job_taken_over_is_fenced_and_changes_nothing(
    stack: Stack, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state machine prepared a job and stopped; the CLI took it over from another place
    and finished it; the execution's late load and finish steps are refused by their epoch."""
    from syncer import reindex_handler
    from syncer.commands.jobs import job_store
    from syncer.core.jobs import JobFencedError, Released, step

    for number in range(6):
        stack.put(_item(f"t{number}", number))
    stack.deliver()
    export = _export(stack, s3, files=2)
    reindex_handler.reset_clients()
    prepared = reindex_handler.lambda_handler(
        {
            "step": "prepare",
            "execution": "arn:execution:stopped",
            "input": {"table": stack.table, "export_uri": export.uri},
        },
        None,
    )
    store = job_store(stack.sinks)
    store.update(stack.table, lambda current: step(current.job, Released()))  # its Lambda died
    monkeypatch.chdir(tmp_path)
    finished = _syncer(stack, "reindex", "--table", stack.table, "--export", export.uri)
    assert finished.exit_code == 0, finished.output
    stored = store.get(stack.table)
    assert stored is not None
    assert (stored.job.phase, stored.job.epoch) == ("done", 2)
    line = s3.get_object(**prepared["manifest"])["Body"].read().decode().splitlines()[0]

    for late in (
        {"step": "load", "job": prepared["job"], "file": json.loads(line)},
        {"step": "finish", "job": prepared["job"]},
    ):
        with pytest.raises(JobFencedError, match=r"taken over by .* this step holds 1"):
            reindex_handler.lambda_handler(late, None)
    reindex_handler.reset_clients()

    after = store.get(stack.table)
    assert after is not None
    assert after.seq_no == stored.seq_no
    assert stack.indexed() == stack.scanned()
    _no_rebuild_left(stack)


def test_an_abandon_between_the_fence_check_and_the_block_leaves_no_block(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--abandon lands after the block phase checked its fence and before its block: the
    block, landing after abandon lifted the others, is lifted again, so the stream writes on."""
    from syncer.commands.reindex import ReindexOptions, reindex_table
    from syncer.core.jobs import JobFencedError

    for number in range(5):
        stack.put(_item(f"x{number}", number))
    stack.deliver()
    (table,) = stack.config.tables
    real_block = reindex.block_writes

    def abandoned_just_before(client: Any, old_index: str | None) -> None:
        reindex.abandon(stack.sinks, table)
        real_block(client, old_index)

    monkeypatch.setattr(reindex, "block_writes", abandoned_just_before)
    with pytest.raises(JobFencedError, match="abandoned by"):
        reindex_table(stack.config, stack.sinks, stack.table, options=ReindexOptions(segments=1))

    _no_rebuild_left(stack)
    stack.put(_item("x9", 9))
    stack.deliver()
    assert stack.failed_invocations == 0
    assert stack.indexed() == stack.scanned()
