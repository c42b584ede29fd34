"""`syncer purge-tombstones` on the real services: old tombstones go, nothing else does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from click.testing import CliRunner

from syncer.cli import main
from syncer.commands.purge import DAY_S, purge_tombstones
from syncer.errors import PurgeRefusedError
from syncer.sinks.search import reindex_alias
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _item(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": "shoes"}}


def _raw(stack: Stack, pk: str) -> dict[str, Any] | None:
    """The document by id, tombstone or not (a GET ignores the alias filter)."""
    client = stack.sinks.opensearch
    response = client.mget(index=stack.index, body={"ids": [f"{pk}|v1"]})
    (doc,) = response["docs"]
    return doc["_source"] if doc.get("found") else None


def _purge(stack: Stack, dry_run: bool = False, days_later: float = 2) -> Any:
    return purge_tombstones(
        stack.sinks.search,
        stack.config.tables[0],
        DAY_S,
        dry_run=dry_run,
        now=time.time() + days_later * DAY_S,
    )


@pytest.fixture
def tombstoned(stack: Stack) -> Stack:
    """Items a, b, c indexed; a and b deleted (two tombstones); b then created again."""
    for pk in ("a", "b", "c"):
        stack.put(_item(pk))
    stack.deliver()
    stack.delete("a", "v1")
    stack.delete("b", "v1")
    stack.deliver()
    tombstone = _raw(stack, "a")
    assert tombstone is not None
    assert tombstone["_syncer"]["deleted"] is True
    stack.put(_item("b"))
    stack.deliver()
    return stack


def test_only_old_tombstones_go_and_live_documents_stay(tombstoned: Stack) -> None:
    """A tombstone older than the age is deleted; a re-created item and live items are kept."""
    stack = tombstoned
    assert _purge(stack, days_later=0).matched == 0  # the tombstone is minutes old

    dry = _purge(stack, dry_run=True)
    assert (dry.matched, dry.deleted) == (1, 0)
    assert _raw(stack, "a") is not None

    report = _purge(stack)
    assert (report.matched, report.deleted, report.failures) == (1, 1, ())
    assert _raw(stack, "a") is None
    recreated = _raw(stack, "b")
    assert recreated is not None
    assert recreated["_syncer"]["deleted"] is False
    assert stack.indexed() == stack.scanned()


def test_refused_while_a_reindex_runs_or_below_a_day(tombstoned: Stack) -> None:
    """Scanned writes of a running reindex rely on tombstones; younger ones may stop a retry."""
    stack = tombstoned
    with pytest.raises(PurgeRefusedError, match="younger than 24 hours"):
        purge_tombstones(stack.sinks.search, stack.config.tables[0], 3600)
    client = stack.sinks.opensearch
    client.indices.create(
        index=f"{stack.index}-000002", body={"aliases": {reindex_alias(stack.index): {}}}
    )
    with pytest.raises(PurgeRefusedError, match="reindex"):
        _purge(stack)
    assert _raw(stack, "a") is not None


def test_command_counts_refuses_and_explains(tombstoned: Stack) -> None:
    """The command prints counts, and rejects a bad or too short age with a clear message."""
    stack = tombstoned
    runner = CliRunner()
    base = ["purge-tombstones", "--config", str(stack.config_path), "--table", stack.table]

    result = runner.invoke(main, [*base, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"{stack.table}: 0 tombstones older than 15d in {stack.index}-000001" in result.output

    result = runner.invoke(main, [*base, "--older-than", "2h"])
    assert result.exit_code == 1
    assert "younger than 24 hours" in result.output

    result = runner.invoke(main, [*base, "--older-than", "soon"])
    assert result.exit_code == 2
    assert "not an age" in result.output

    result = runner.invoke(main, [*base[:-1], "nope"])
    assert result.exit_code == 1
    assert f"table 'nope' is not configured (configured: {stack.table})" in result.output


def test_pages_through_many_tombstones_with_progress(tombstoned: Stack) -> None:
    """Page by page (here one tombstone a page), every old tombstone goes, progress is told."""
    stack = tombstoned
    stack.delete("c", "v1")
    stack.deliver()
    seen: list[tuple[int, int]] = []
    report = purge_tombstones(
        stack.sinks.search,
        stack.config.tables[0],
        DAY_S,
        now=time.time() + 2 * DAY_S,
        on_progress=lambda done, total: seen.append((done, total)),
        page_size=1,
    )
    assert (report.matched, report.deleted, report.conflicts) == (2, 2, 0)
    assert seen == [(1, 2), (2, 2)]
    assert _raw(stack, "a") is None
    assert _raw(stack, "c") is None
    assert stack.indexed() == stack.scanned()
