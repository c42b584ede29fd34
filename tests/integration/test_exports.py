"""`reindex --export` and `backfill` on the real services, from exports in AWS's layout in S3."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from syncer.cli import main
from syncer.commands import exports as export_commands
from syncer.commands.backfill import backfill
from syncer.commands.exports import finish as export_finish
from syncer.commands.exports import load as export_load
from syncer.commands.exports import reindex_from_export
from syncer.commands.jobs import job_store
from syncer.core.attributes import decode_item
from syncer.errors import ConfigError
from syncer.sinks.build import aws_client
from syncer.sinks.exports import ExportFileError
from syncer.sinks.search import reindex_alias
from tests.exportfiles import full_line, gzip_lines, incremental_line, split, write_export
from tests.integration.conftest import REDIS_URL, Stack
from tests.integration.machine import run_machine
from tests.integration.rebuilds import catalog_item, table_items

pytestmark = pytest.mark.integration


_item = catalog_item


@pytest.fixture
def s3() -> Any:
    return aws_client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"exports-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def quick_file_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_load, "FILE_RETRY_BACKOFF_S", 0.0)


_table_items = table_items


def _write(stack: Stack, s3: Any, bucket: str, files: Any, **options: Any) -> Any:
    """An export of the stack's table (its ``tableArn`` names it)."""
    return write_export(s3, bucket, files, table=stack.table, **options)


def _stored(stack: Stack, doc_id: str) -> dict[str, Any] | None:
    """The document behind the alias by id, tombstones included (a GET ignores alias filters)."""
    client = stack.sinks.opensearch
    (concrete,) = client.indices.get_alias(name=stack.index)
    response = client.get(index=concrete, id=doc_id, params={"ignore": "404"})
    return response.get("_source") if response.get("found") else None


def _ghost_and_export(stack: Stack, s3: Any, bucket: str, files: int = 3) -> tuple[Any, str]:
    """The old index holds 30 items and a ghost whose REMOVE is still in flight; an export of
    the table (no ghost, an empty file) is taken; then the stream changes one item and deletes
    another, which only the old index learns before the reindex."""
    for number in range(30):
        stack.put(_item(f"a{number}", number))
    stack.put(_item("ghost", 1))
    stack.deliver()
    stack.delete("ghost", "v1")
    in_flight = stack.new_records()  # the REMOVE is not delivered before the reindex
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in in_flight)
    lines = [full_line(item) for item in _table_items(stack)]
    export = _write(stack, s3, bucket, [*split(lines, files), []])
    stack.put(_item("a1", 1001))
    stack.delete("a2", "v1")
    stack.deliver()
    return export, "ghost|v1"


@pytest.mark.parametrize(("workers", "slices"), [(1, 1), (2, 3)])
def test_reindex_from_an_export_equals_the_table(
    stack: Stack,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    workers: int,
    slices: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The new index equals the table: later changes carried, the ghost tombstoned for good
    (finish's scroll of the old index in one slice, or in three as for three shards)."""
    monkeypatch.setattr(export_finish, "_primary_shards", lambda *_: slices)
    export, ghost = _ghost_and_export(stack, s3, bucket)
    insert_of_ghost = [
        r for r in stack.stream_records() if r["dynamodb"]["Keys"]["pk"]["S"] == "ghost"
    ][:1]

    result = reindex_from_export(
        stack.config,
        stack.sinks,
        stack.table,
        export.uri,
        workers=workers,
        s3=s3,
    )

    assert result.files == 4
    assert result.files_resumed == 0
    assert result.counts.items == 30  # a2 (deleted later) included, the ghost not
    ((_alias, new_index, _old_index),) = result.indices
    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [new_index]
    assert not stack.sinks.opensearch.indices.exists_alias(name=reindex_alias(stack.index))
    assert stack.indexed() == stack.scanned()
    assert stack.indexed()["a1|v1"]["price"] == 1001
    ghost_doc = _stored(stack, ghost)
    assert ghost_doc is not None
    assert ghost_doc["_syncer"]["deleted"] is True
    assert result.absent_tombstoned >= 1
    stack.invoke(insert_of_ghost)  # a redrive of the ghost's old INSERT
    assert ghost not in stack.indexed()
    finished = job_store(stack.sinks).get(stack.table)  # the job record, not a local file
    assert finished is not None
    assert finished.job.phase == "done"


def test_a_corrupt_file_fails_the_run_by_name_and_a_rerun_resumes(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """An MD5 mismatch is retried, then fails naming the file; the swap waits; a rerun resumes."""
    for number in range(20):
        stack.put(_item(f"c{number}", number))
    stack.deliver()
    lines = [full_line(item) for item in _table_items(stack)]
    files = split(lines, 4)
    export = _write(stack, s3, bucket, files)
    bad_key = export.data_keys[2]
    s3.put_object(Bucket=bucket, Key=bad_key, Body=gzip_lines(files[2][:-1]))
    (old_index,) = stack.sinks.opensearch.indices.get_alias(name=stack.index)

    with pytest.raises(ExportFileError, match=f"{bad_key}.*failed 3 times.*MD5"):
        reindex_from_export(stack.config, stack.sinks, stack.table, export.uri, s3=s3)

    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [old_index]
    stored = job_store(stack.sinks).get(stack.table)
    assert stored is not None
    done = [key for key, item in stored.job.progress.items() if item.done]
    assert sorted(done) == sorted(export.data_keys[:2])
    assert stored.job.phase == "load"
    s3.put_object(Bucket=bucket, Key=bad_key, Body=gzip_lines(files[2]))
    result = reindex_from_export(stack.config, stack.sinks, stack.table, export.uri, s3=s3)
    assert result.files_resumed == 2
    assert result.counts.items == len(files[2]) + len(files[3])
    assert stack.indexed() == stack.scanned()


def test_a_file_whose_count_disagrees_fails_by_name(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """A data file holding fewer items than its manifest line says is never counted as loaded."""
    stack.put(_item("d1"))
    lines = [full_line(item) for item in _table_items(stack)]
    export = _write(stack, s3, bucket, [lines], claimed_counts={0: 2})

    with pytest.raises(ExportFileError, match=f"{export.data_keys[0]} holds 1 items.*says 2"):
        reindex_from_export(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            s3=s3,
        )


def test_bad_options_are_refused_before_anything_is_created(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """--workers 0 creates no index and no reindex alias."""
    export = _write(stack, s3, bucket, [[]])
    with pytest.raises(ConfigError, match="--workers"):
        reindex_from_export(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            workers=0,
            s3=s3,
        )
    assert not stack.sinks.opensearch.indices.exists_alias(name=reindex_alias(stack.index))


def test_reindex_command_with_export_prints_the_swap(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncer reindex --export` loads the export with two workers and says where the alias points."""
    for number in range(10):
        stack.put(_item(f"e{number}", number))
    stack.deliver()
    export = _write(stack, s3, bucket, split([full_line(i) for i in _table_items(stack)], 3))
    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(
        main,
        [
            "reindex",
            "--config",
            str(stack.config_path),
            "--table",
            stack.table,
            "--export",
            export.uri,
            "--workers",
            "2",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    assert f"alias {stack.index} -> {stack.index}-000002" in outcome.output
    assert "3 files" in outcome.output
    assert stack.indexed() == stack.scanned()


def test_backfill_applies_an_incremental_export_without_going_back_in_time(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Missed writes and deletes land, a newer stream change stays, and cache keys are cleared."""
    for number in range(6):
        stack.put(_item(f"b{number}", number))
    stack.deliver()
    time.sleep(3.2)  # the window's writes are certainly after the stream changes above
    window_start = dt.datetime.now(dt.UTC)
    # The trigger is off: these writes never reach the stream's consumer.
    stack.put(_item("b1", 50))
    b1_at = dt.datetime.now(dt.UTC)
    stack.delete("b2", "v1")
    b2_at = dt.datetime.now(dt.UTC)
    stack.put(_item("b3", 60))
    b3_at = dt.datetime.now(dt.UTC)
    stack.put(_item("b9", 9))
    b9_at = dt.datetime.now(dt.UTC)
    missed = stack.new_records()
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in missed)
    time.sleep(3.2)
    stack.put(_item("b3", 70))  # the trigger is back: a newer change of b3 is delivered
    stack.deliver()
    window_end = dt.datetime.now(dt.UTC)
    key = lambda pk: {"pk": {"S": pk}, "sk": {"S": "v1"}}  # noqa: E731
    lines = [
        incremental_line(key("b1"), b1_at, _item("b1", 50), _item("b1", 1)),
        incremental_line(key("b2"), b2_at, None, _item("b2", 2)),
        incremental_line(key("b3"), b3_at, _item("b3", 60), _item("b3", 3)),
        incremental_line(key("b9"), b9_at, _item("b9", 9)),
    ]
    export = _write(
        stack, s3, bucket, [lines[:2], lines[2:]], incremental=(window_start, window_end)
    )
    cache = redis.Redis.from_url(REDIS_URL)
    cache_keys = [f"product:b{n}" for n in (1, 2, 9)]
    cache.mset(dict.fromkeys(cache_keys, "stale"))

    result = backfill(
        stack.config,
        stack.sinks,
        stack.table,
        export.uri,
        s3=s3,
    )

    assert result.export_type == "INCREMENTAL_EXPORT"
    assert result.counts.items == 4
    indexed = stack.indexed()
    assert indexed == stack.scanned()
    assert indexed["b1|v1"]["price"] == 50
    assert indexed["b3|v1"]["price"] == 70
    assert "b2|v1" not in indexed
    assert indexed["b9|v1"]["price"] == 9
    assert cache.exists(*cache_keys) == 0
    b2 = _stored(stack, "b2|v1")
    assert b2 is not None
    assert b2["_syncer"]["deleted"] is True
    assert decode_item(missed[0]["dynamodb"]["NewImage"])["price"] == 50
    stack.invoke(missed)  # the missed records arrive late after all: nothing goes back
    assert stack.indexed() == stack.scanned()


_run_machine = run_machine


def test_the_state_machine_definition_runs_the_handler_steps_to_a_swap(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """template.yaml's machine, walked by tests/asl.py over the real handler: same index as a table."""

    export, ghost = _ghost_and_export(stack, s3, bucket)

    output = _run_machine(s3, {"table": stack.table, "export_uri": export.uri})

    assert output["absent_tombstoned"] >= 1
    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [
        f"{stack.index}-000002"
    ]
    assert stack.indexed() == stack.scanned()
    assert ghost not in stack.indexed()


def test_a_failed_file_fails_the_map_and_the_machine_never_swaps(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ToleratedFailurePercentage 0: one corrupt file, and Finish (the swap) is never reached."""
    from tests.asl import MapFailedError

    for number in range(8):
        stack.put(_item(f"f{number}", number))
    stack.deliver()
    files = split([full_line(item) for item in _table_items(stack)], 2)
    export = _write(stack, s3, bucket, files)
    s3.put_object(Bucket=bucket, Key=export.data_keys[0], Body=gzip_lines(files[0][:-1]))
    (old_index,) = stack.sinks.opensearch.indices.get_alias(name=stack.index)

    with pytest.raises(MapFailedError, match="1 of 2 items failed"):
        _run_machine(s3, {"table": stack.table, "export_uri": export.uri})

    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [old_index]
    assert stack.sinks.opensearch.indices.exists_alias(name=reindex_alias(stack.index))


def test_backfill_command_loads_a_full_export_into_the_live_index(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncer backfill` with a full export fills an index the stream never fed, in place."""
    for number in range(12):
        stack.put(_item(f"g{number}", number))
    never_delivered = stack.new_records()
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in never_delivered)
    export = _write(stack, s3, bucket, split([full_line(i) for i in _table_items(stack)], 2))
    (live_index,) = stack.sinks.opensearch.indices.get_alias(name=stack.index)
    monkeypatch.chdir(tmp_path)

    outcome = CliRunner().invoke(
        main,
        [
            "backfill",
            "--config",
            str(stack.config_path),
            "--table",
            stack.table,
            "--export",
            export.uri,
        ],
    )

    assert outcome.exit_code == 0, outcome.output
    assert "12 items of a FULL_EXPORT from 2 files" in outcome.output
    assert "12 written" in outcome.output
    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [live_index]
    assert stack.indexed() == stack.scanned()


def test_a_scan_reindex_in_worker_processes_equals_the_table_and_keeps_absent_reads(
    stack: Stack, tmp_path: Path
) -> None:
    """`reindex --workers 2` without an export: the scan's segments run as work items in a
    process pool; the finish tombstones an item the old index holds but the table lost, swaps
    and catches up, as the threaded reindex does."""
    # given an indexed table, and one item deleted from the table behind syncer's back
    for number in range(40):
        stack.put(_item(f"w{number}", price=number))
    stack.deliver()
    stack.dynamodb.delete_item(TableName=stack.table, Key={"pk": {"S": "w7"}, "sk": {"S": "v1"}})
    old_insert = [r for r in stack.stream_records() if r["dynamodb"]["Keys"]["pk"]["S"] == "w7"]
    # when the scan reindex runs its 4 segments in 2 worker processes
    result = export_commands.reindex_scan_in_workers(
        stack.config,
        stack.sinks,
        stack.table,
        segments=4,
        workers=2,
    )
    # then the alias points at the new index, which equals the table
    ((_alias, new_index, _old),) = result.indices
    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [new_index]
    assert not stack.sinks.opensearch.indices.exists_alias(name=reindex_alias(stack.index))
    assert stack.indexed() == stack.scanned()
    assert "w7|v1" not in stack.indexed()
    # and the absent item is a tombstone there, so a replay of its old INSERT changes nothing
    assert result.absent_tombstoned == 1
    stack.invoke(old_insert[:1])
    assert "w7|v1" not in stack.indexed()
