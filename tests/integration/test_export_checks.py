"""Exports are checked before anything is applied, and what load cannot decode never removes an
item (issue 24, defects 3, 4, 5, 9, 10 and 14), on the real services."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from syncer.cli import main
from syncer.commands.backfill import backfill
from syncer.commands.exports import ExportJob, load_file, prepare_export, reindex_from_export
from syncer.commands.exports import load as export_load
from syncer.core.exports import ExportRefusedError
from syncer.sinks.build import aws_client
from syncer.sinks.exports import ExportFileError
from syncer.sinks.items import ItemReader
from syncer.sinks.search import reindex_alias
from tests.exportfiles import full_line, gzip_lines, split, write_export
from tests.integration.conftest import REDIS_URL, Stack

pytestmark = pytest.mark.integration


def _item(pk: str, price: Any = 10) -> dict[str, Any]:
    typed = {"N": str(price)} if isinstance(price, int) else {"S": str(price)}
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": "shoes"}, "price": typed}


@pytest.fixture
def s3() -> Any:
    return aws_client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"checks-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def quick_file_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_load, "FILE_RETRY_BACKOFF_S", 0.0)


def _put_unseen(stack: Stack, items: list[dict[str, Any]]) -> None:
    """Items written to the table whose stream records never reach the index."""
    for item in items:
        stack.put(item)
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in stack.new_records())


def _table_lines(stack: Stack) -> list[dict[str, Any]]:
    paginator = stack.dynamodb.get_paginator("scan")
    pages = paginator.paginate(TableName=stack.table, ConsistentRead=True)
    return [full_line(item) for page in pages for item in page["Items"]]


def _aliases(stack: Stack) -> tuple[list[str], bool]:
    client = stack.sinks.opensearch
    return sorted(client.indices.get_alias(name=stack.index)), bool(
        client.indices.exists_alias(name=reindex_alias(stack.index))
    )


def _count_table_reads(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items are read from the table (consistent re-reads) from now on."""
    reads: list[int] = []
    original = ItemReader.read

    def counting(self: ItemReader, table: str, keys: Any, deadline: Any = None) -> Any:
        reads.append(len(keys))
        return original(self, table, keys, deadline)

    monkeypatch.setattr(ItemReader, "read", counting)
    return reads


# --- defect 3: another table's export ------------------------------------------------------


def test_backfill_of_another_tables_export_exits_non_zero_and_changes_nothing(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's export into A: refused naming both tables; A's index gains no ghost."""
    # given A's index, and an export of table B holding items A never had
    stack.put(_item("a1"))
    stack.deliver()
    before = stack.indexed()
    other = f"other-{uuid.uuid4().hex[:6]}"
    export = write_export(
        s3, bucket, [[full_line(_item("b1")), full_line(_item("b2"))]], table=other
    )
    monkeypatch.chdir(tmp_path)
    # when `syncer backfill` applies it to A
    args = ["backfill", "--config", str(stack.config_path), "--table", stack.table]
    outcome = CliRunner().invoke(main, [*args, "--export", export.uri])
    # then it fails naming both tables, and A's index is as it was
    assert outcome.exit_code != 0
    assert other in outcome.output
    assert stack.table in outcome.output
    assert stack.indexed() == before


def test_reindex_from_another_tables_export_is_refused_before_anything_is_created(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """B's export as A's rebuild: refused before a new index or reindex alias exists."""
    stack.put(_item("a1"))
    stack.deliver()
    aliases = _aliases(stack)
    export = write_export(s3, bucket, [[full_line(_item("b1"))]], table="some-other-table")

    with pytest.raises(ExportRefusedError, match=f"some-other-table.*{stack.table}"):
        reindex_from_export(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            s3=s3,
        )

    assert _aliases(stack) == aliases
    assert not stack.sinks.opensearch.indices.exists(index=f"{stack.index}-000002")
    assert stack.indexed().keys() == {"a1|v1"}


def test_an_export_without_a_table_arn_is_refused(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """No tableArn: syncer cannot tell whose export it is, so it applies nothing."""
    export = write_export(s3, bucket, [[full_line(_item("b1"))]], table_arn="")
    with pytest.raises(ExportRefusedError, match="no tableArn"):
        backfill(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            s3=s3,
        )
    assert stack.indexed() == {}


# --- defect 5: an export older than the tombstone retention ----------------------------------


@pytest.mark.parametrize("command", ["reindex", "backfill"])
def test_an_export_older_than_the_tombstone_retention_is_refused(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, command: str
) -> None:
    """An 18-day-old export: refused with the reason (its deleted items would come back)."""
    # given an index whose item was deleted 16 days ago (its tombstone past the 15 days)
    stack.put(_item("gone"))
    stack.deliver()
    aliases = _aliases(stack)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=18)
    export = write_export(
        s3, bucket, [[full_line(_item("gone"))]], export_time=old, table=stack.table
    )
    run = reindex_from_export if command == "reindex" else backfill
    # when it is loaded, then it is refused, saying why, and nothing changed
    with pytest.raises(ExportRefusedError, match=r"18\.0 days old.*15-day tombstone retention"):
        run(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            s3=s3,
        )
    assert _aliases(stack) == aliases


@pytest.mark.parametrize("refused", ["another table", "too old"])
def test_the_state_machines_prepare_refuses_before_claiming_a_job(
    stack: Stack, s3: Any, bucket: str, refused: str
) -> None:
    """The reindex state machine's Prepare step runs the same checks: another table's export,
    or one older than the tombstone retention, fails the step before a job, a new index or a
    reindex alias exists."""
    from syncer import reindex_handler
    from syncer.commands.jobs import job_store

    # given a synced table, and an export that must not be applied to it
    stack.put(_item("a1"))
    stack.deliver()
    aliases = _aliases(stack)
    lines = [[full_line(_item("b1"))]]
    if refused == "another table":
        export, match = write_export(s3, bucket, lines, table="some-other-table"), "other-table"
    else:
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=18)
        export = write_export(s3, bucket, lines, export_time=old, table=stack.table)
        match = "tombstone retention"
    # when the machine's Prepare step runs, then it fails saying why, and nothing exists
    reindex_handler.reset_clients()
    try:
        with pytest.raises(ExportRefusedError, match=match):
            reindex_handler.lambda_handler(
                {
                    "step": "prepare",
                    "execution": f"arn:execution:refused-{uuid.uuid4().hex[:6]}",
                    "input": {"table": stack.table, "export_uri": export.uri},
                },
                None,
            )
    finally:
        reindex_handler.reset_clients()
    assert job_store(stack.sinks).get(stack.table) is None
    assert _aliases(stack) == aliases
    assert not stack.sinks.opensearch.indices.exists(index=f"{stack.index}-000002")
    assert stack.indexed().keys() == {"a1|v1"}


# --- defect 9: a file's MD5 before any of its lines ----------------------------------------


def test_backfill_applies_no_line_of_a_file_whose_md5_differs(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """A replaced data file: none of its lines becomes visible, none of its cache keys cleared."""
    # given 20 items the index never learned, and an export of them in two files
    _put_unseen(stack, [_item(f"m{number}", number) for number in range(20)])
    files = split(_table_lines(stack), 2)
    export = write_export(s3, bucket, files, table=stack.table)
    # and the second file replaced by one whose lines say price 999 (its MD5 differs)
    corrupt = [full_line(_item(line["Item"]["pk"]["S"], 999)) for line in files[1]]
    s3.put_object(Bucket=bucket, Key=export.data_keys[1], Body=gzip_lines(corrupt))
    cache = redis.Redis.from_url(REDIS_URL)
    keys = [f"product:{line['Item']['pk']['S']}" for line in corrupt]
    cache.mset(dict.fromkeys(keys, "cached"))
    # when backfill runs in pages of 4 lines, it fails naming the file
    with pytest.raises(ExportFileError, match=f"{export.data_keys[1]}.*MD5"):
        backfill(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            page_size=4,
            s3=s3,
        )
    # then no line of the corrupt file reached search or the cache
    indexed = stack.indexed()
    assert all(doc["price"] != 999 for doc in indexed.values())
    assert not {f"{line['Item']['pk']['S']}|v1" for line in corrupt} & indexed.keys()
    assert cache.exists(*keys) == len(keys)
    cache.delete(*keys)


# --- defect 4: an undecodable line ---------------------------------------------------------


def test_an_undecodable_export_line_never_removes_its_item(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """A line syncer cannot decode is dead-lettered, and its item is read again from the table
    instead of being tombstoned as absent from the export."""
    # given an indexed table, and an export in which one line's number is unreadable
    for number in range(6):
        stack.put(_item(f"u{number}", number))
    stack.deliver()
    lines = _table_lines(stack)
    bad = next(line for line in lines if line["Item"]["pk"]["S"] == "u3")
    bad["Item"]["price"] = {"N": "not-a-number"}
    # taken after the indexed changes (so the old index's u3 is older than the export)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
    export = write_export(s3, bucket, split(lines, 2), table=stack.table, export_time=later)
    # when the index is rebuilt from it
    result = reindex_from_export(stack.config, stack.sinks, stack.table, export.uri, s3=s3)
    # then the line is reported, and the item is in the new index as the table holds it
    assert result.counts.rejected == 1
    assert result.absent_tombstoned == 0
    assert stack.indexed() == stack.scanned()
    assert stack.indexed()["u3|v1"]["price"] == 3


def test_a_line_neither_it_nor_the_table_can_index_keeps_the_old_document(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """When the item as the table holds it cannot be indexed either (its price became text, which
    the index maps as a number), the old index's document is kept rather than tombstoned."""
    # given an indexed item whose later change the old index rejected
    stack.put(_item("k1", 5))
    stack.put(_item("k2", 6))
    stack.deliver()
    stack.put(_item("k1", "five"))
    stack.deliver()
    # when the index is rebuilt from an export of the table (k2 first: price is mapped a number)
    lines = sorted(_table_lines(stack), key=lambda line: line["Item"]["pk"]["S"] != "k2")
    export = write_export(s3, bucket, [lines], table=stack.table)
    result = reindex_from_export(stack.config, stack.sinks, stack.table, export.uri, s3=s3)
    # then the item is still searchable, with the state the old index held
    assert result.absent_tombstoned == 0
    assert stack.indexed()["k1|v1"]["price"] == 5
    assert stack.indexed()["k2|v1"]["price"] == 6


def test_a_line_without_a_readable_key_stops_the_reindex_before_the_swap(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """A line whose item key syncer cannot read: the reindex stops, the alias is not moved."""
    stack.put(_item("n1"))
    stack.deliver()
    aliases = _aliases(stack)
    lines = [*_table_lines(stack), {"Item": {"sk": {"S": "v1"}}}]
    export = write_export(s3, bucket, [lines], table=stack.table)
    with pytest.raises(Exception, match=r"key.*rebuild with a scan"):
        reindex_from_export(
            stack.config,
            stack.sinks,
            stack.table,
            export.uri,
            s3=s3,
        )
    assert _aliases(stack)[0] == aliases[0]
    assert stack.indexed().keys() == {"n1|v1"}


# --- defect 10: a retried work item recognises its own writes ------------------------------


def test_a_retried_export_file_reads_nothing_from_the_table(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data file loaded again (a retried load step) skips the documents it wrote itself
    instead of reading each item again from DynamoDB."""
    for number in range(30):
        stack.put(_item(f"r{number}", number))
    stack.deliver()
    export = write_export(s3, bucket, [_table_lines(stack)], table=stack.table)
    handle, files = prepare_export(stack.config, stack.sinks, s3, stack.table, export.uri)
    job = ExportJob.of(handle.job)
    first = load_file(stack.config, stack.sinks, s3, job, files[0])
    reads = _count_table_reads(stack, monkeypatch)

    again = load_file(stack.config, stack.sinks, s3, job, files[0])

    assert first.written == 30
    assert sum(reads) == 0
    assert again.written == 0
    assert again.already_newer == 30


def test_a_backfill_run_again_reads_nothing_from_the_table(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same export backfilled twice: the second run finds its own states and reads nothing."""
    _put_unseen(stack, [_item(f"t{number}", number) for number in range(12)])
    export = write_export(s3, bucket, split(_table_lines(stack), 2), table=stack.table)
    backfill(stack.config, stack.sinks, stack.table, export.uri, s3=s3)
    reads = _count_table_reads(stack, monkeypatch)

    again = backfill(stack.config, stack.sinks, stack.table, export.uri, s3=s3)

    assert sum(reads) == 0
    assert again.counts.written == 0
    assert again.counts.already_newer == 12
    assert stack.indexed() == stack.scanned()


# --- defect 14: counts say what happened ---------------------------------------------------


def test_backfill_without_a_reindex_counts_no_absent_alias_as_already_newer(
    stack: Stack, s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no reindex running, every line written is counted once, and none as already newer."""
    _put_unseen(stack, [_item(f"c{number}", number) for number in range(8)])
    export = write_export(s3, bucket, [_table_lines(stack)], table=stack.table)
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
    assert "8 written, 0 already" in outcome.output
