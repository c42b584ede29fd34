"""The write rounds (``core.rounds.write_documents``) run by their caller over a store that only
sends: conflicts planned again, bounded, re-reads asked of the caller, bugs raised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from syncer.core.documents import (
    Decision,
    DocumentRef,
    DocumentWrite,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.rounds import write_documents
from syncer.core.versions import Version
from syncer.core.writes import WriteOptions
from syncer.pipeline import process_batch
from tests.contracts import writer
from tests.fakes import FakeSearch, fake_sinks
from tests.unit.test_process_batch import _config, record


def _newer_than_indexed(seq: int, seen: list[TargetState]) -> Any:
    """``tests.contracts.writer`` at ``seq``, recording every target it is shown."""
    plan = writer(seq, name=f"v{seq}")

    def recorded(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
        seen.append(target)
        return plan(ref, target, read)

    return recorded


@pytest.fixture
def search() -> FakeSearch:
    search = FakeSearch()
    search.create("idx")
    return search


def test_a_conflict_is_read_and_planned_again_against_what_is_there(search: FakeSearch) -> None:
    """A 409 sends the ref round again: read afresh, planned against the newer state."""
    # given a document another writer replaces between our read and our write
    write_documents(search, [("idx", "k")], _newer_than_indexed(1, []), WriteOptions())
    search.item_statuses["k"] = [409]
    seen: list[TargetState] = []
    # when a newer state is written
    result = write_documents(search, [("idx", "k")], _newer_than_indexed(5, seen), WriteOptions())
    # then the second round planned it again on a fresh read and wrote it
    assert result.status(("idx", "k")) is Settled.WRITTEN
    assert len(seen) == 2
    assert search.document("idx", "k")["name"] == "v5"


def test_conflicts_that_never_end_fail_the_ref_after_the_bounded_rounds(
    search: FakeSearch,
) -> None:
    """Rounds are bounded by the store's retry policy; what is left is FAILED with a reason."""
    # given a document whose every write meets a conflict
    search.item_statuses["k"] = [409] * 10
    # when it is written
    result = write_documents(search, [("idx", "k")], _newer_than_indexed(5, []), WriteOptions())
    # then it fails after the policy's attempts (3 in the fakes), saying why
    assert result.status(("idx", "k")) is Settled.FAILED
    assert "version conflicts" in result.outcomes[("idx", "k")].reason
    assert search.bulk_requests == 3


def test_an_unknown_order_asks_the_caller_to_read_the_item_again(search: FakeSearch) -> None:
    """``Verdict.REREAD`` goes to the caller's ``reread``; its state is planned the same round."""
    asked: list[Sequence[DocumentRef]] = []
    version = Version(read_from_ms=1_000, read_to_ms=2_000)

    def reread(refs: Sequence[DocumentRef]) -> dict[DocumentRef, ReadState | str]:
        asked.append(refs)
        return {ref: ReadState({"name": "fresh"}, version) for ref in refs}

    def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
        if read is None:
            return Verdict.REREAD
        return DocumentWrite(ref, WriteKind.INDEX, dict(read.item or {}), target.document)

    result = write_documents(search, [("idx", "k")], plan, WriteOptions(reread=reread))
    assert asked == [[("idx", "k")]]
    assert result.rereads == 1
    assert search.document("idx", "k") == {"name": "fresh"}


def test_a_bug_in_the_store_is_raised_not_settled(search: FakeSearch) -> None:
    """An error no table knows fails loudly instead of settling refs as FAILED."""
    search.fail_next.append(ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        write_documents(search, [("idx", "k")], _newer_than_indexed(5, []), WriteOptions())


class _NoApply(FakeSearch):
    def apply(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pipeline asked the store to run the write loop")


def test_the_pipeline_runs_the_write_rounds_itself() -> None:
    """process_batch runs the rounds over the store's reads and sends; the store runs no loop.

    Failed on the old code: the pipeline handed its planner to ``SearchSink.apply``."""
    search = _NoApply()
    search.create("catalog")
    search.item_statuses["p-1|v1"] = [409]
    outcome = process_batch(
        [record("MODIFY", "p-1", 3, category="shoes")], _config(), fake_sinks(search)
    )
    assert outcome.indexed == 1
    assert search.bulk_requests == 2


def test_the_old_import_path_warns_and_names_the_new_one() -> None:
    """``syncer.sinks.search.write_documents`` still works for a release, with a warning."""
    import syncer.sinks.search as search_sink

    with pytest.warns(DeprecationWarning, match=r"syncer\.core\.rounds\.write_documents"):
        moved = search_sink.write_documents
    assert moved is write_documents
