"""The management commands on the in-memory fakes of their ports (tests/fakes.py): purge,
verify, redrive and a scan reindex, with their failure tables, routes and conflicts, without
any server (the same commands run on the real services in tests/integration)."""

from __future__ import annotations

import time
import tomllib
from typing import Any

import pytest

from syncer.commands.purge import purge_tombstones
from syncer.commands.redrive import Fate, redrive_entries
from syncer.commands.verify import verify_table
from syncer.config import Config, parse_config
from syncer.core.bodies import document_body, tombstone_body
from syncer.core.documents import SYNCER_FIELD
from syncer.core.versions import Version, read_version
from syncer.errors import PurgeRefusedError, SearchUnavailableError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER
from tests.fakes import FakeCache, FakeItems, FakeLetters, FakeSearch, fake_sinks
from tests.unit.test_process_batch import record

DAY_S = 86_400
NOW = 1_800_000_000.0


def config(routes: str = "") -> Config:
    table = routes or 'index = "catalog"\ncache_keys = ["product:{pk}"]'
    return parse_config(tomllib.loads(f'[[tables]]\nname = "catalog"\n{table}\n'), environ={})


def put(search: FakeSearch, index: str, doc_id: str, body: dict[str, Any]) -> None:
    documents = search.indices[search.aliases.get(index, index)]
    seq_no = documents[doc_id][1] + 1 if doc_id in documents else 0
    documents[doc_id] = (body, seq_no)


def typed(plain: dict[str, Any]) -> dict[str, Any]:
    return {k: {"N": str(v)} if isinstance(v, int) else {"S": v} for k, v in plain.items()}


# purge-tombstones


def tombstone(changed_at_s: float) -> dict[str, Any]:
    table = config().tables[0]
    return tombstone_body(table, Version(seq=1, changed_at_ms=int(changed_at_s * 1000)))


def live(changed_at_s: float) -> dict[str, Any]:
    table = config().tables[0]
    version = Version(seq=1, changed_at_ms=int(changed_at_s * 1000))
    return document_body({"pk": "p", "sk": "v"}, table, version)


@pytest.fixture
def search() -> FakeSearch:
    search = FakeSearch()
    search.create("catalog")
    return search


def test_purge_deletes_only_old_tombstones(search: FakeSearch) -> None:
    """Tombstones older than the age go; young ones and live documents stay."""
    # given two old tombstones, a young one and an old live document
    put(search, "catalog", "old-1", tombstone(NOW - 20 * DAY_S))
    put(search, "catalog", "old-2", tombstone(NOW - 16 * DAY_S))
    put(search, "catalog", "young", tombstone(NOW - 3600))
    put(search, "catalog", "live", live(NOW - 30 * DAY_S))
    # when tombstones older than 15 days are purged
    report = purge_tombstones(search, config().tables[0], 15 * DAY_S, now=NOW)
    # then the old tombstones are deleted, the rest kept
    assert (report.matched, report.deleted, report.conflicts) == (2, 2, 0)
    assert report.failures == ()
    assert sorted(search.indices["catalog-000001"]) == ["live", "young"]


def test_a_dry_run_counts_and_deletes_nothing(search: FakeSearch) -> None:
    """``--dry-run`` counts the old tombstones and deletes none."""
    put(search, "catalog", "old", tombstone(NOW - 20 * DAY_S))
    report = purge_tombstones(search, config().tables[0], 15 * DAY_S, now=NOW, dry_run=True)
    assert (report.matched, report.deleted) == (1, 0)
    assert "old" in search.indices["catalog-000001"]


def test_a_tombstone_replaced_after_the_search_stays(search: FakeSearch) -> None:
    """A newer change that lands between the search and the delete is kept (a conflict)."""
    # given an old tombstone that a newer change replaces right after the search found it
    put(search, "catalog", "old", tombstone(NOW - 20 * DAY_S))
    found = search.search

    def search_then_replace(alias: str, body: Any) -> list[dict[str, Any]]:
        hits = found(alias, body)
        if hits:
            put(search, "catalog", "old", live(NOW))
        return hits

    search.search = search_then_replace  # type: ignore[method-assign]
    # when the purge runs
    report = purge_tombstones(search, config().tables[0], 15 * DAY_S, now=NOW)
    # then nothing is deleted and the new state stays
    assert (report.deleted, report.conflicts) == (0, 1)
    assert search.document("catalog", "old")[SYNCER_FIELD]["deleted"] is False


def test_a_delete_opensearch_keeps_failing_is_reported(search: FakeSearch) -> None:
    """A delete that keeps failing (503) is reported and the tombstone stays; the purge stops."""
    put(search, "catalog", "old", tombstone(NOW - 20 * DAY_S))
    search.item_statuses["old"] = [503] * 10
    report = purge_tombstones(search, config().tables[0], 15 * DAY_S, now=NOW)
    assert report.deleted == 0
    assert len(report.failures) == 1
    assert report.failures[0].startswith("old: ")
    assert "old" in search.indices["catalog-000001"]


@pytest.mark.parametrize(
    ("age_s", "reindexing", "match"),
    [(3600, False, "younger than 24 hours"), (15 * DAY_S, True, "a reindex of 'catalog'")],
)
def test_a_purge_that_could_lose_a_tombstone_is_refused(
    search: FakeSearch, age_s: float, reindexing: bool, match: str
) -> None:
    """Too young an age, or a reindex running: refused before anything is deleted."""
    put(search, "catalog", "old", tombstone(NOW - 20 * DAY_S))
    if reindexing:
        search.aliases["catalog-reindexing"] = "catalog-000001"
    with pytest.raises(PurgeRefusedError, match=match):
        purge_tombstones(search, config().tables[0], age_s, now=NOW)
    assert "old" in search.indices["catalog-000001"]


# verify


def table_and_index() -> tuple[FakeSearch, FakeItems, FakeCache]:
    """A table of four items and an index that drifted: one missing, one differing, a ghost."""
    table = config().tables[0]
    search, items, cache = FakeSearch(), FakeItems(), FakeCache()
    search.create("catalog")
    past = time.time() - 3600  # before the verify reads the table
    version = read_version(past, past + 1)
    for pk, name in (("same", "boot"), ("missing", "hat"), ("differs", "new")):
        item = {"pk": pk, "sk": "v1", "name": name}
        items.put("catalog", typed(item), ("pk", "sk"))
    for pk, name in (("same", "boot"), ("differs", "old"), ("ghost", "gone")):
        body = document_body({"pk": pk, "sk": "v1", "name": name}, table, version)
        put(search, "catalog", f"{pk}|v1", body)
    return search, items, cache


def test_verify_finds_missing_differing_and_ghost_documents() -> None:
    """Each kind of drift is reported by id; nothing is written without --repair."""
    search, items, cache = table_and_index()
    report = verify_table(config(), fake_sinks(search, cache, items), "catalog")
    assert (report.missing, report.differing, report.ghost) == (
        ["missing|v1"],
        ["differs|v1"],
        ["ghost|v1"],
    )
    assert report.checked_items == 3
    assert report.drift == 3
    assert search.document("catalog", "missing|v1") is None


def test_verify_repair_writes_what_the_table_holds_and_clears_the_cache() -> None:
    """--repair indexes the missing and differing items, tombstones the ghost, clears keys."""
    search, items, cache = table_and_index()
    report = verify_table(config(), fake_sinks(search, cache, items), "catalog", repair=True)
    assert report.repaired == 3
    assert report.unrepaired == []
    assert search.document("catalog", "missing|v1")["name"] == "hat"
    assert search.document("catalog", "differs|v1")["name"] == "new"
    assert search.document("catalog", "ghost|v1")[SYNCER_FIELD]["deleted"] is True
    assert set().union(*cache.invalidated) >= {
        "product:missing",
        "product:differs",
        "product:ghost",
    }
    again = verify_table(config(), fake_sinks(search, cache, items), "catalog")
    assert again.drift == 0


def test_verify_repair_never_replaces_a_newer_stream_change() -> None:
    """A drifted document the stream has since written newer is left to the stream."""
    search, items, cache = table_and_index()
    newer = Version(seq=5, changed_at_ms=int((time.time() + DAY_S) * 1000))
    body = document_body({"pk": "differs", "sk": "v1", "name": "newest"}, config().tables[0], newer)
    put(search, "catalog", "differs|v1", body)
    report = verify_table(config(), fake_sinks(search, cache, items), "catalog", repair=True)
    assert report.left_to_stream == 1
    assert search.document("catalog", "differs|v1")["name"] == "newest"


def test_verify_repair_that_cannot_write_is_reported() -> None:
    """A repair OpenSearch keeps refusing (429) is listed with its reason, not dropped."""
    search, items, cache = table_and_index()
    search.item_statuses["missing|v1"] = [429] * 10
    report = verify_table(config(), fake_sinks(search, cache, items), "catalog", repair=True)
    assert len(report.unrepaired) == 1
    assert report.unrepaired[0].startswith("catalog/missing|v1: ")
    assert search.document("catalog", "missing|v1") is None


def test_verify_checks_each_route_index_for_its_own_items() -> None:
    """A routed table: an item in the wrong route's index is a ghost there, missing in its own."""
    routes = """
[[tables.routes]]
index = "boots"
match = { attribute = "kind", equals = "boot" }
[[tables.routes]]
index = "others"
match = { attribute = "kind", equals = "hat" }
"""
    cfg = config(routes)
    search, items = FakeSearch(), FakeItems()
    search.create("boots")
    search.create("others")
    items.put("catalog", typed({"pk": "b", "sk": "v1", "kind": "boot"}), ("pk", "sk"))
    view = cfg.tables[0].route_table(cfg.tables[0].resolved_routes[1])
    body = document_body({"pk": "b", "sk": "v1", "kind": "boot"}, view, read_version(1.0, 2.0))
    put(search, "others", "b|v1", body)
    report = verify_table(cfg, fake_sinks(search, items=items), "catalog", repair=True)
    assert (report.missing, report.ghost) == (["b|v1"], ["b|v1"])
    assert search.document("boots", "b|v1")["kind"] == "boot"
    assert search.document("others", "b|v1")[SYNCER_FIELD]["deleted"] is True


# deadletter redrive


def entry(stream_record: dict[str, Any]) -> dict[str, Any]:
    sequence = stream_record["dynamodb"]["SequenceNumber"]
    return DeadLetter(stream_record, "catalog", "X", "earlier", sequence).to_entry()


def redrive_config() -> Config:
    text = '[[tables]]\nname = "catalog"\nindex = "catalog"\ncache_keys = ["product:{pk}"]\n'
    return parse_config(tomllib.loads(text), environ={})


def test_redrive_fates(search: FakeSearch) -> None:
    """Each entry's fate: redriven, rejected again (a new letter), unreadable, not a record."""
    # given a good record, a poison one (a number that is not one), an unreadable entry and
    # an entry that holds no stream record
    letters = FakeLetters()
    good = record("MODIFY", "p-1", 1, category="shoes")
    poison = record("MODIFY", "p-2", 2, category="hats")
    poison["dynamodb"]["NewImage"]["price"] = {"N": "twelve"}
    entries = [entry(good), entry(poison), None, {"record": {"not": "a stream record"}}]
    # when they are redriven
    fates = redrive_entries(entries, redrive_config(), fake_sinks(search, letters=letters))
    # then the good one is indexed, the poison one has a new letter, the rest are kept
    assert fates == [Fate.REDRIVEN, Fate.REJECTED_AGAIN, Fate.UNREADABLE, Fate.NOT_REDRIVABLE]
    assert search.document("catalog", "p-1|v1")["category"] == "shoes"
    assert [letter.sequence_text for letter in letters.letters] == [
        str(poison["dynamodb"]["SequenceNumber"])
    ]


def test_redrive_while_opensearch_is_down_keeps_the_entry(search: FakeSearch) -> None:
    """A record whose write fails again is FAILED_AGAIN (kept), never counted as redriven."""
    search.fail_next = [SearchUnavailableError("down")] * 20
    fates = redrive_entries(
        [entry(record("MODIFY", "p-1", 1, category="shoes"))], redrive_config(), fake_sinks(search)
    )
    assert fates == [Fate.FAILED_AGAIN]


def test_redrive_of_an_older_change_leaves_the_newer_state(search: FakeSearch) -> None:
    """A dead-lettered change older than the indexed state is redriven without going back."""
    sinks = fake_sinks(search)
    from syncer.pipeline import process_batch

    process_batch([record("MODIFY", "p-1", 9, category="new")], redrive_config(), sinks)
    fates = redrive_entries(
        [entry(record("MODIFY", "p-1", 1, category="old"))], redrive_config(), sinks
    )
    assert fates == [Fate.REDRIVEN]
    assert search.document("catalog", "p-1|v1")["category"] == "new"


def test_the_same_record_dead_lettered_twice_shares_one_fate(search: FakeSearch) -> None:
    """Two entries of one stream record (stored twice, read as two objects) are both rejected
    again: the fate follows the record's identity (stream and sequence), not the object."""
    poison = record("MODIFY", "p-2", 2, category="hats")
    poison["dynamodb"]["NewImage"]["price"] = {"N": "twelve"}
    fates = redrive_entries([entry(poison), entry(poison)], redrive_config(), fake_sinks(search))
    assert fates == [Fate.REJECTED_AGAIN, Fate.REJECTED_AGAIN]


# reindex (a scan, its job record's phases)


def reindex_stack() -> tuple[Config, FakeSearch, FakeItems, Any]:
    """A table of three items, and its index: two documents, a young tombstone, and a live
    document whose item is gone (the scan will read it as absent)."""
    cfg = config()
    table = cfg.tables[0]
    search, items = FakeSearch(), FakeItems()
    search.create("catalog")
    past = time.time() - 3600
    for pk in ("a", "b", "c"):
        items.put("catalog", typed({"pk": pk, "sk": "v1", "name": f"new-{pk}"}), ("pk", "sk"))
    for pk in ("a", "b"):
        body = document_body({"pk": pk, "sk": "v1", "name": "old"}, table, read_version(past, past))
        put(search, "catalog", f"{pk}|v1", body)
    young = Version(seq=7, changed_at_ms=int(past * 1000))
    put(search, "catalog", "d|v1", tombstone_body(table, young))
    body = document_body({"pk": "e", "sk": "v1", "name": "gone"}, table, read_version(past, past))
    put(search, "catalog", "e|v1", body)
    return cfg, search, items, fake_sinks(search, items=items)


def test_a_scan_reindex_on_the_fakes_runs_every_phase_to_done() -> None:
    """Prepare, load, settle, block, swap, catch-up: the alias moves to a new index holding the
    table, the young tombstone carried, the absent item tombstoned, the old index blocked."""
    from syncer.commands.jobs import job_store
    from syncer.commands.reindex import ReindexOptions, reindex_table

    cfg, search, _items, sinks = reindex_stack()
    result = reindex_table(cfg, sinks, "catalog", options=ReindexOptions(segments=2))
    assert result.indices == (("catalog", "catalog-000002", "catalog-000001"),)
    assert search.aliases["catalog"] == "catalog-000002"
    assert "catalog-reindexing" not in search.aliases
    assert search.alias_filters["catalog"] == LIVE_DOCUMENTS_FILTER  # it hides tombstones
    assert "catalog-000001" in search.blocked
    assert {d: search.document("catalog", d)["name"] for d in ("a|v1", "b|v1", "c|v1")} == {
        "a|v1": "new-a",
        "b|v1": "new-b",
        "c|v1": "new-c",
    }
    assert search.document("catalog", "d|v1")[SYNCER_FIELD]["deleted"] is True
    assert search.document("catalog", "e|v1")[SYNCER_FIELD]["deleted"] is True
    assert (result.indexed, result.tombstones_carried, result.absent_tombstoned) == (3, 1, 1)
    stored = job_store(sinks).get("catalog")
    assert stored is not None
    assert stored.job.phase == "done"


def test_a_reindex_whose_scan_fails_resumes_from_its_job_record() -> None:
    """DynamoDB down during the load: the run fails (its job kept, released); the next run
    resumes the same job and finishes it, on the same new index."""
    from syncer.commands.jobs import job_store
    from syncer.commands.reindex import ReindexOptions, reindex_table
    from syncer.errors import TableReadError

    cfg, search, items, sinks = reindex_stack()
    items.fail_next = [TableReadError("down")] * 3  # every attempt of the first page
    with pytest.raises(TableReadError):
        reindex_table(cfg, sinks, "catalog", options=ReindexOptions(segments=1))
    stopped = job_store(sinks).get("catalog")
    assert stopped is not None
    assert stopped.job.phase == "load"
    assert search.aliases["catalog-reindexing"] == "catalog-000002"
    result = reindex_table(cfg, sinks, "catalog", options=ReindexOptions(segments=1))
    assert result.indices == (("catalog", "catalog-000002", "catalog-000001"),)
    assert search.aliases["catalog"] == "catalog-000002"
    assert job_store(sinks).get("catalog").job.id == stopped.job.id


def test_abandon_on_the_fakes_fences_the_job_and_drops_its_index() -> None:
    """--abandon: the running job fenced, the half-built index and its alias dropped, the
    serving index unblocked and still serving."""
    from syncer.commands.jobs import job_store
    from syncer.commands.reindex import abandon, prepare_indices, start_scan_job

    cfg, search, _items, sinks = reindex_stack()
    table = cfg.tables[0]
    handle, _ = start_scan_job(sinks, table, 1)
    prepare_indices(cfg, sinks, handle)
    search.blocked.add("catalog-000001")  # as a swap that never finished leaves it
    abandoned = abandon(sinks, table)
    assert abandoned.dropped == ("catalog-000002",)
    assert abandoned.unblocked == ("catalog-000001",)
    assert abandoned.job == handle.job.id
    assert "catalog-000002" not in search.indices
    assert search.aliases == {"catalog": "catalog-000001"}
    assert job_store(sinks).get("catalog").job.phase == "abandoned"


def test_a_reindex_while_one_is_running_is_refused() -> None:
    """A second reindex of a table whose job's holder is alive is refused, naming it."""
    from syncer.commands.reindex import start_scan_job
    from syncer.core.jobs import JobRunningError

    cfg, _search, _items, sinks = reindex_stack()
    start_scan_job(sinks, cfg.tables[0], 1)
    with pytest.raises(JobRunningError, match="already running"):
        start_scan_job(sinks, cfg.tables[0], 1)


# backfill: one page of an incremental export applied to the live index


def test_a_backfill_page_writes_newer_lines_tombstones_deletes_and_skips_older_ones() -> None:
    """A newer line is indexed, a delete tombstoned, an older line skipped (counted as held),
    a poison line dead-lettered alone; the cache keys of what changed are cleared."""
    import json

    from syncer.commands.backfill import prepare_backfill_page, write_backfill_page
    from syncer.core.exports import INCREMENTAL_EXPORT, ExportSummary

    cfg = config()
    table = cfg.tables[0]
    search, cache, letters = FakeSearch(), FakeCache(), FakeLetters()
    search.create("catalog")
    now_us = int(time.time() * 1_000_000)
    newer_than_line = Version(changed_at_ms=now_us // 1000 + DAY_S * 1000, seq=9)
    put(
        search,
        "catalog",
        "kept|v1",
        document_body({"pk": "kept", "sk": "v1"}, table, newer_than_line),
    )

    def line(pk: str, image: dict[str, Any] | None) -> bytes:
        data: dict[str, Any] = {
            "Keys": typed({"pk": pk, "sk": "v1"}),
            "Metadata": {"WriteTimestampMicros": {"N": str(now_us - 1_000_000)}},
        }
        if image is not None:
            data["NewImage"] = image
        return json.dumps(data).encode()

    page = [
        line("new", typed({"pk": "new", "sk": "v1", "name": "boot"})),
        line("gone", None),
        line("kept", typed({"pk": "kept", "sk": "v1", "name": "older"})),
        line("bad", {**typed({"pk": "bad", "sk": "v1"}), "n": {"N": "twelve"}}),
    ]
    summary = ExportSummary("arn:export", INCREMENTAL_EXPORT, now_us // 1000, 4, "m", "bucket")
    key_types = {"pk": "S", "sk": "S"}
    prepared = prepare_backfill_page(table, key_types, summary, page, "s3://bucket/data/1")
    sinks = fake_sinks(search, cache, letters=letters)
    counts = write_backfill_page(cfg, sinks, table, key_types, prepared)
    assert search.document("catalog", "new|v1")["name"] == "boot"
    assert search.document("catalog", "gone|v1")[SYNCER_FIELD]["deleted"] is True
    assert "name" not in search.document("catalog", "kept|v1")
    assert (counts.items, counts.written, counts.already_newer, counts.rejected) == (4, 2, 1, 1)
    assert [letter.error_class for letter in letters.letters] == ["PoisonRecordError"]
    assert set().union(*cache.invalidated) == {"product:new", "product:gone"}


# an export's settle phase and its unloaded lines


def export_stack() -> tuple[Config, FakeSearch, FakeItems, Any, float]:
    """The serving index (catalog-000001) and a new one behind the reindex alias."""
    cfg = config()
    search, items = FakeSearch(), FakeItems()
    search.create("catalog")
    search.indices["catalog-000002"] = {}
    search.aliases["catalog-reindexing"] = "catalog-000002"
    return cfg, search, items, fake_sinks(search, items=items), time.time() - 3600


def test_an_export_settle_carries_what_the_export_cannot_have_seen() -> None:
    """The old index's live documents: newer than the export carried, older and absent from
    the export tombstoned, older and loaded left, unordered ones read again."""
    from syncer.commands.exports.finish import carry_live_documents

    cfg, search, items, sinks, at = export_stack()
    table = cfg.tables[0]
    export = read_version(at - 60, at + 60)
    before = read_version(at - 7200, at - 7199)
    after = Version(seq=3, changed_at_ms=int((at + 600) * 1000))
    during = read_version(at, at + 1)
    for pk, version in (("a", before), ("b", before), ("c", after), ("d", during)):
        body = document_body({"pk": pk, "sk": "v1", "name": f"old-{pk}"}, table, version)
        put(search, "catalog", f"{pk}|v1", body)
    loaded = document_body({"pk": "a", "sk": "v1", "name": "exported"}, table, export)
    put(search, "catalog-000002", "a|v1", loaded)
    items.put("catalog", typed({"pk": "d", "sk": "v1", "name": "read"}), ("pk", "sk"))
    counts = carry_live_documents(
        cfg,
        sinks,
        table,
        "catalog",
        "catalog-000001",
        "catalog-reindexing",
        export,
        {"pk": "S", "sk": "S"},
    )
    assert (counts.carried, counts.absent_tombstoned) == (2, 1)
    new = search.indices["catalog-000002"]
    assert new["a|v1"][0]["name"] == "exported"
    assert new["b|v1"][0][SYNCER_FIELD]["deleted"] is True
    assert new["c|v1"][0]["name"] == "old-c"
    assert new["d|v1"][0]["name"] == "read"


def test_unloaded_lines_are_read_again_else_kept_as_the_old_index_held_them() -> None:
    """A line load could not index: its item read again and written; when that is refused
    too, the old index's document kept; when neither can be, reported as lost."""
    from syncer.commands.exports.unloaded import settle_unloaded

    cfg, search, items, sinks, at = export_stack()
    table = cfg.tables[0]
    for pk in ("x", "y", "z"):
        items.put("catalog", typed({"pk": pk, "sk": "v1", "name": f"now-{pk}"}), ("pk", "sk"))
    old = document_body({"pk": "y", "sk": "v1", "name": "old-y"}, table, read_version(at, at))
    put(search, "catalog", "y|v1", old)
    search.item_statuses["y|v1"] = [400]  # the read state is refused, the old one is not
    search.item_statuses["z|v1"] = [400]  # refused, and the old index has nothing
    counts = settle_unloaded(
        sinks,
        table,
        {"catalog": "catalog-reindexing"},
        {"catalog": "catalog-000001"},
        {"pk": "S", "sk": "S"},
        ["x|v1", "y|v1", "z|v1", "x|v1"],
        "s3://b/data/1",
    )
    assert (counts.reread, counts.kept_old, counts.lost) == (1, 1, 1)
    new = search.indices["catalog-000002"]
    assert new["x|v1"][0]["name"] == "now-x"
    assert new["y|v1"][0]["name"] == "old-y"
    assert "z|v1" not in new
