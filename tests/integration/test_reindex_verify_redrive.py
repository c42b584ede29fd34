"""Management commands on the real services: reindex, verify, dead-letter list and redrive."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncer.cli import main
from syncer.commands.jobs import job_store
from syncer.commands.reindex import ReindexOptions, SegmentProgress, reindex_table
from syncer.commands.verify import verify_table
from syncer.sinks.search import reindex_alias
from tests.integration.conftest import BOTH_REDIS_TOPOLOGIES, Stack

pytestmark = pytest.mark.integration


def _item(pk: str, category: str = "shoes", price: str = "10") -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "category": {"S": category},
        "price": {"N": price},
        "cost": {"N": "1"},
    }


def _alias_target(stack: Stack) -> list[str]:
    return sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index))


def test_reindex_while_the_stream_flows_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """Writes and stream deliveries during a reindex all end up in the new index after the swap."""
    for number in range(300):
        stack.put(_item(f"r{number}", price=str(number)))
    stack.deliver(batch_size=100)  # the handler's container is warm before the reindex starts
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        rng = random.Random(7)
        try:
            while not stop.is_set():
                for _ in range(5):
                    pk = f"r{rng.randrange(320)}"
                    if rng.random() < 0.25:
                        stack.delete(pk, "v1")
                    else:
                        stack.put(_item(pk, rng.choice(["hats", "bags"]), str(rng.randint(1, 999))))
                stack.deliver(batch_size=7)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = reindex_table(
            stack.config,
            stack.sinks,
            stack.table,
            options=ReindexOptions(segments=3, page_size=25),
        )
    finally:
        stop.set()
        writer.join()
    assert not errors
    stack.deliver(batch_size=50)
    ((_, new_index, _),) = result.indices
    assert _alias_target(stack) == [new_index]
    assert not stack.sinks.opensearch.indices.exists_alias(name=reindex_alias(stack.index))
    assert stack.indexed() == stack.scanned()


def test_reindex_resumes_after_a_crash(stack: Stack, tmp_path: Path) -> None:
    """A reindex that dies midway continues into the same index when run again."""
    for number in range(60):
        stack.put(_item(f"c{number}"))
    stack.deliver()
    pages = {"seen": 0}

    def crash_after_two_pages(_: SegmentProgress) -> None:
        pages["seen"] += 1
        if pages["seen"] == 2:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        reindex_table(
            stack.config,
            stack.sinks,
            stack.table,
            options=ReindexOptions(segments=1, page_size=10, on_progress=crash_after_two_pages),
        )
    stored = job_store(stack.sinks).get(stack.table)
    assert stored is not None
    saved = stored.job
    assert saved.phase == "load"
    assert saved.progress["segment-0"].last_key
    resumed: list[int] = []
    options = ReindexOptions(segments=1, page_size=10, on_resume=resumed.append)
    result = reindex_table(stack.config, stack.sinks, stack.table, options=options)
    assert resumed == [20]  # the progress goes on from the two pages scanned before
    ((_, new_index, _),) = result.indices
    assert [rebuild.new_index for rebuild in saved.rebuilds] == [new_index]
    finished = job_store(stack.sinks).get(stack.table)
    assert finished is not None
    assert finished.job.phase == "done"
    assert stack.indexed() == stack.scanned()


def test_reindex_command_prints_the_swap(stack: Stack, tmp_path: Path) -> None:
    """`syncer reindex` rebuilds, swaps and says where the alias points now."""
    stack.put(_item("cli"))
    stack.deliver()
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "reindex",
            "--config",
            str(stack.config_path),
            "--table",
            stack.table,
            "--delete-old",
            "--delete-grace-s",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"alias {stack.index} -> {stack.index}-000002" in result.output
    assert _alias_target(stack) == [f"{stack.index}-000002"]
    assert stack.indexed() == stack.scanned()


def _drift(stack: Stack) -> None:
    """Make one missing, one ghost and one differing document behind syncer's back."""
    for pk in ("same", "miss", "diff"):
        stack.put(_item(pk))
    stack.deliver()
    client = stack.sinks.opensearch
    (index,) = _alias_target(stack)
    client.delete(index=index, id="miss|v1", params={"refresh": "true"})
    client.index(
        index=index,
        id="ghost|v1",
        body={"pk": "ghost", "sk": "v1", "_syncer": {"seq": "1", "deleted": False}},
        params={"refresh": "true"},
    )
    client.update(
        index=index, id="diff|v1", body={"doc": {"price": 999}}, params={"refresh": "true"}
    )


def test_verify_reports_missing_ghost_and_differing_documents(stack: Stack) -> None:
    """verify finds each kind of drift by content."""
    _drift(stack)
    report = verify_table(stack.config, stack.sinks, stack.table)
    assert (report.missing, report.ghost, report.differing) == (
        ["miss|v1"],
        ["ghost|v1"],
        ["diff|v1"],
    )


@BOTH_REDIS_TOPOLOGIES
def test_verify_repair_fixes_drift_and_exit_codes_tell(stack: Stack) -> None:
    """`verify --repair` exits 1 on drift and fixes it; a second verify exits 0."""
    _drift(stack)
    stack.sinks.redis.set("product:diff", "stale")
    runner = CliRunner()
    args = ["verify", "--config", str(stack.config_path), "--table", stack.table]
    first = runner.invoke(main, [*args, "--repair"])
    assert first.exit_code == 1, first.output
    assert "1 missing, 1 ghost, 1 differing" in first.output
    assert "repaired 3" in first.output
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    assert stack.indexed() == stack.scanned()
    assert stack.sinks.redis.exists("product:diff") == 0


def test_verify_sample_checks_a_subset(stack: Stack) -> None:
    """--sample compares about N items and N documents and still reports drift among them."""
    for number in range(40):
        stack.put(_item(f"s{number}"))
    stack.deliver()
    report = verify_table(stack.config, stack.sinks, stack.table, sample=10)
    assert 0 < report.checked_items <= 40
    assert report.checked_documents == 10
    assert report.drift == 0


@BOTH_REDIS_TOPOLOGIES
def test_deadletter_list_and_redrive_never_go_back_in_time(stack: Stack) -> None:
    """A dead-lettered old record, redriven after newer changes, changes nothing but leaves the file."""
    stack.put(_item("old", category="shoes"))
    (old_record,) = stack.new_records()
    stack.deliver()
    stack.put(_item("old", category="hats"))
    stack.deliver()
    dead = Path(stack.config.deadletter.file or "")
    entry = {
        "time": "t",
        "table": stack.table,
        "sequence_number": old_record["dynamodb"]["SequenceNumber"],
        "error": {"class": "CacheInvalidationError", "message": "redis was down"},
        "record": old_record,
    }
    dead.write_text(json.dumps(entry) + "\n")
    runner = CliRunner()
    listed = runner.invoke(main, ["deadletter", "list", "--config", str(stack.config_path)])
    assert "CacheInvalidationError: redis was down" in listed.output
    stack.sinks.redis.set("product:old", "stale")
    redriven = runner.invoke(main, ["deadletter", "redrive", "--config", str(stack.config_path)])
    assert redriven.exit_code == 0, redriven.output
    assert "1 redriven" in redriven.output
    assert stack.indexed()["old|v1"]["category"] == "hats"
    assert stack.sinks.redis.exists("product:old") == 0
    assert not dead.exists() or dead.read_text() == ""


def test_verify_sample_reads_binary_and_number_keys_with_their_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ghost checks look items up with the key schema's types (N and B), not as strings.

    The binary attribute is the range key: moto's segmented Scan fails on a binary hash key
    (it hashes the value as text), which real DynamoDB does not.
    """
    import base64
    import uuid

    from syncer.config import load_config
    from syncer.demo import create_catalog_table
    from syncer.pipeline import process_batch
    from syncer.sinks.build import aws_client, build_sinks
    from syncer.sinks.indices import apply_setup, plan_setup
    from tests.integration.conftest import write_config

    suffix = uuid.uuid4().hex[:8]
    table, index = f"binary-keys-{suffix}", f"binary-keys-it-{suffix}"
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = load_config(str(write_config(tmp_path / "syncer.toml", table, index)))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    create_catalog_table(dynamodb, table, view_type=None, key_types=("N", "B"))
    apply_setup(sinks.opensearch, config.tables[0], plan_setup(sinks.opensearch, config.tables[0]))
    try:
        records = []
        for number, raw in enumerate([b"\x00\x01", b"\xff|", b"ghost"], start=1):
            keys = {"pk": {"N": str(number)}, "sk": {"B": base64.b64encode(raw).decode()}}
            if raw != b"ghost":  # the third one exists only in the index
                dynamodb.put_item(
                    TableName=table, Item={"pk": {"N": str(number)}, "sk": {"B": raw}}
                )
            records.append(
                {
                    "eventID": str(number),
                    "eventName": "INSERT",
                    "eventSource": "aws:dynamodb",
                    "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
                    "/stream/2024-01-01T00:00:00.000",
                    "dynamodb": {
                        "Keys": keys,
                        "NewImage": keys,
                        "SequenceNumber": f"{10**20 + number}",
                        "ApproximateCreationDateTime": 1704067200,
                        "StreamViewType": "NEW_IMAGE",
                    },
                }
            )
        outcome = process_batch(records, config, sinks)
        assert outcome.indexed == 3
        report = verify_table(config, sinks, table, sample=10)
        ghost_id = f"3|{base64.b64encode(b'ghost').decode()}"
        assert (report.missing, report.differing, report.ghost) == ([], [], [ghost_id])
        assert report.checked_documents == 3
    finally:
        dynamodb.delete_table(TableName=table)
        sinks.opensearch.indices.delete(index=f"{index}-*")
        sinks.opensearch.indices.delete_index_template(name=f"syncer-{index}")


def test_verify_compares_numbers_beyond_64_bits(stack: Stack) -> None:
    """An item holding a 38-digit number verifies clean (it crashed with 'Integer exceeds 64-bit
    range': the fingerprint handed opensearch-py's integer to orjson)."""
    # given an item with numbers above 2^64, synced to the index
    item = _item("big", price="12345678901234567890123456789012345678")
    item["negative"] = {"N": "-98765432109876543210"}
    stack.put(item)
    stack.deliver()
    # when verify compares table and index
    report = verify_table(stack.config, stack.sinks, stack.table)
    # then it finds no drift
    assert (report.checked_items, report.drift) == (1, 0)


def test_verify_repair_of_a_table_clears_its_search_cache_keys_after_a_refresh(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repair of a table without routes invalidates its search cache keys, bulk refreshed.

    On the old code the plain-table repair rendered only ``cache_keys`` and sent no ``refresh``.
    """
    table = replace(stack.config.require_table(stack.table), search_cache_keys=("page:{category}",))
    config = replace(stack.config, tables=(table,))
    _drift(stack)
    stack.sinks.redis.set("page:shoes", "stale")
    refreshes: list[object] = []
    bulk = stack.sinks.opensearch.bulk

    def recording_bulk(*args: Any, **kwargs: Any) -> Any:
        refreshes.append((kwargs.get("params") or {}).get("refresh"))
        return bulk(*args, **kwargs)

    monkeypatch.setattr(stack.sinks.opensearch, "bulk", recording_bulk)
    report = verify_table(config, stack.sinks, stack.table, repair=True)
    assert report.repaired == 3
    assert stack.sinks.redis.exists("page:shoes") == 0
    assert refreshes
    assert set(refreshes) == {"true"}


def _stray(stack: Stack, doc_id: str) -> None:
    """A live document whose id no key of the table's schema makes (written by another tool)."""
    (index,) = _alias_target(stack)
    stack.sinks.opensearch.index(
        index=index,
        id=doc_id,
        body={"name": "left behind", "category": "stray", "_syncer": {"deleted": False}},
        params={"refresh": "true"},
    )


@pytest.mark.parametrize("doc_id", ["no-separator", "#" + "ab" * 32], ids=["plain", "hashed"])
def test_verify_reports_documents_whose_id_no_item_key_makes(stack: Stack, doc_id: str) -> None:
    """A document no item key makes is drift (exit 1), and --repair takes it out of search.

    On the old code it was counted as an uncheckable hashed id and verify exited 0.
    """
    stack.put(_item("kept"))
    stack.deliver()
    _stray(stack, doc_id)
    runner = CliRunner()
    args = ["verify", "--config", str(stack.config_path), "--table", stack.table]
    first = runner.invoke(main, [*args, "--repair"])
    assert first.exit_code == 1, first.output
    assert "1 stray" in first.output
    assert f"stray: {stack.index}/{doc_id}" in first.output
    assert "repaired 1" in first.output
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    assert stack.indexed() == stack.scanned()


def test_verify_leaves_a_hashed_long_id_alone_when_its_item_exists(stack: Stack) -> None:
    """A long key's hashed id is keyed from the scan when its _source cannot give the key."""
    long_pk = "p" * 600
    stack.put(_item(long_pk))
    stack.deliver()
    (doc_id,) = [d for d in stack.indexed() if d.startswith("#")]
    (index,) = _alias_target(stack)
    client = stack.sinks.opensearch
    source = client.get(index=index, id=doc_id)["_source"]
    del source["pk"]  # a transform could drop the key attribute: so does this
    client.index(index=index, id=doc_id, body=source, params={"refresh": "true"})
    report = verify_table(stack.config, stack.sinks, stack.table)
    assert report.stray == []
    assert report.ghost == []
    assert report.unverifiable == 0
