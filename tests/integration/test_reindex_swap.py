"""The alias swap at the end of a reindex loses no acknowledged change (issue 19, item 1).

A batch resolves the main alias (its ``_mget``) and asks whether a reindex runs (its ``HEAD``)
at about the same time. When the swap falls between the two, the batch has the old index as its
only target; the swap blocks writes on the old index first, so that write gets a 403 and the
retry resolves the alias anew (docs/ordering.md, "The swap").
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from syncer.commands import reindex
from syncer.commands.reindex import (
    ReindexOptions,
    prepare_indices,
    reindex_table,
    start_scan_job,
    swap_alias,
)
from syncer.pipeline import process_batch
from syncer.sinks.build import build_sinks
from syncer.sinks.resilience import Downstream
from syncer.sinks.search import reindex_alias
from tests.integration.conftest import OPENSEARCH_URL, Stack

pytestmark = pytest.mark.integration


def _item(pk: str, category: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": category}, "price": {"N": "1"}}


class _SwapBetweenMgetAndHead:
    """An OpenSearch client that runs ``swap`` right after the first ``_mget`` returned, and
    holds every ``HEAD`` of an alias until the swap is done: the interleaving, step by step.
    """

    def __init__(self, client: Any, swap: Any) -> None:
        self._client, self._swap = client, swap
        self.swapped = threading.Event()
        self.indices = _HeldHeads(client.indices, self.swapped)

    def mget(self, **kwargs: Any) -> Any:
        response = self._client.mget(**kwargs)
        if not self.swapped.is_set():
            self._swap()
            self.swapped.set()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _HeldHeads:
    def __init__(self, indices: Any, swapped: threading.Event) -> None:
        self._indices, self._swapped = indices, swapped

    def exists_alias(self, **kwargs: Any) -> Any:
        assert self._swapped.wait(10), "the swap never happened"
        return self._indices.exists_alias(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._indices, name)


def test_a_batch_that_resolved_the_old_index_before_the_swap_lands_in_the_new_one(
    stack: Stack, tmp_path: Path
) -> None:
    """_mget before the swap (old index), HEAD after it (no reindex), write after it: not lost."""
    # given an item in the old index, and a reindex whose new index is ready to take the alias
    stack.put(_item("s", "shoes"))
    stack.deliver()
    client = stack.sinks.opensearch
    (table,) = stack.config.tables
    handle, _ = start_scan_job(stack.sinks, table, 1)
    prepare_indices(stack.config, stack.sinks, handle)
    (old_index,) = client.indices.get_alias(name=stack.index)
    (new_index,) = client.indices.get_alias(name=reindex_alias(stack.index))
    # when the item changes and its batch resolves the alias just before the swap, asks for the
    # reindex alias just after it, and then writes
    stack.put(_item("s", "hats"))
    records = stack.new_records()
    proxy = _SwapBetweenMgetAndHead(client, lambda: swap_alias(client, table, new_index, old_index))
    outcome = process_batch(records, stack.config, stack.sinks.replace(opensearch=proxy))
    # then the change was acknowledged and search, now on the new index, shows it
    assert proxy.swapped.is_set()
    assert not outcome.failed_sequence_numbers
    assert sorted(client.indices.get_alias(name=stack.index)) == [new_index]
    assert stack.indexed()["s|v1"]["category"] == "hats"


WRITERS = 6
SWAPS = 4


@pytest.fixture
def slow_opensearch() -> Iterator[str]:
    """OpenSearch 10 ms away each way (20 ms a round trip), through bench/delay_proxy.py."""
    target = urlsplit(OPENSEARCH_URL)
    relay = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parents[2] / "bench" / "delay_proxy.py"),
            "--target",
            f"{target.hostname}:{target.port or 9200}",
            "--delay-ms",
            "10",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        yield f"http://127.0.0.1:{int(relay.stdout.readline())}"
    finally:
        relay.kill()
        relay.wait()


def test_writers_through_a_slow_opensearch_lose_nothing_across_swaps(
    stack: Stack, tmp_path: Path, slow_opensearch: str
) -> None:
    """Six writers add items and deliver each, 20 ms from OpenSearch, while reindexes swap:
    every acknowledged item is searchable.

    Each change adds a new item, so a later change can never mend a lost one. The record of
    each is the stream's shape with a later sequence number (the emulator's stream is read too
    slowly to keep six writers busy); a batch that reports failures is delivered again.
    """
    # given an item, and six writers delivering through a slow OpenSearch
    stack.put(_item("first", "start"))
    (template,) = stack.new_records()
    stack.deliver()
    config = dataclasses.replace(
        stack.config, opensearch=dataclasses.replace(stack.config.opensearch, url=slow_opensearch)
    )
    slow = build_sinks(config)
    sequence = itertools.count(int(template["dynamodb"]["SequenceNumber"]) + 10**6)
    errors: list[BaseException] = []
    stop = threading.Event()

    def add_and_deliver(writer: int) -> None:
        try:
            for number in itertools.count():
                if stop.is_set():
                    return
                item = _item(f"w{writer}-{number}", "new")
                stack.put(item)
                records = [_record_of(template, item, next(sequence))]
                while process_batch(records, config, slow).failed_sequence_numbers:
                    pass  # Lambda retries the batch; applying it again is idempotent
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    writers = [threading.Thread(target=add_and_deliver, args=(n,)) for n in range(WRITERS)]
    for thread in writers:
        thread.start()
    try:
        # when the table is reindexed several times while the changes flow
        for _run in range(SWAPS):
            options = ReindexOptions(segments=2, page_size=50)
            reindex_table(stack.config, stack.sinks, stack.table, options=options)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
        slow.close()
    # then every acknowledged item is searchable through the alias
    assert not errors
    assert stack.indexed() == stack.scanned()


def _record_of(template: dict[str, Any], item: dict[str, Any], sequence: int) -> dict[str, Any]:
    """The stream record of writing ``item``: ``template``'s shape, this change's data."""
    record = copy.deepcopy(template)
    record["eventName"] = "INSERT"
    record["dynamodb"].update(
        {
            "Keys": {"pk": item["pk"], "sk": item["sk"]},
            "NewImage": item,
            "SequenceNumber": str(sequence),
            "ApproximateCreationDateTime": float(int(time.time())),
        }
    )
    record["dynamodb"].pop("OldImage", None)
    return record


class _ConflictInNewThenHoldForSwap:
    """A batch's OpenSearch client: its write to the reindex index meets a 409 (a scan page
    rewrote the document between the batch's read and its write), and its next round waits
    until the swap is done, so that round finds no reindex alias.
    """

    def __init__(self, client: Any, new_index: str) -> None:
        self._client, self._new_index = client, new_index
        self.round_one_written = threading.Event()
        self.swapped = threading.Event()

    def mget(self, **kwargs: Any) -> Any:
        response = self._client.mget(**kwargs)
        for doc in response["docs"]:
            if doc.get("_index") == self._new_index and doc.get("found"):
                source = self._client.get(index=self._new_index, id=doc["_id"])["_source"]
                self._client.index(index=self._new_index, id=doc["_id"], body=source)
        return response

    def bulk(self, **kwargs: Any) -> Any:
        response = self._client.bulk(**kwargs)
        if not self.round_one_written.is_set():
            self.round_one_written.set()
            assert self.swapped.wait(10), "the swap never happened"
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_change_written_to_the_old_index_only_before_the_swap_is_caught_up(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old index written, new index 409, swap, retry finds no reindex: the reindex catches up."""
    # given an item the reindex scans, and a change of it whose batch runs at the swap: its
    # first round writes the old index and meets a 409 on the new one, its retry comes after
    stack.put(_item("t", "shoes"))
    stack.deliver()
    real_swap = reindex.swap_alias
    outcomes: list[Any] = []

    def swap_during_a_batch(client: Any, table: Any, new_index: str, old: str | None) -> None:
        stack.put(_item("t", "hats"))
        records = stack.new_records()
        batch_client = _ConflictInNewThenHoldForSwap(stack.sinks.opensearch, new_index)
        # its own guard, as in another process: a breaker serialises calls through it
        guard = Downstream("opensearch", stack.config.resilience)
        sinks = stack.sinks.replace(opensearch=batch_client, opensearch_guard=guard)
        batch = threading.Thread(
            target=lambda: outcomes.append(process_batch(records, stack.config, sinks))
        )
        batch.start()
        assert batch_client.round_one_written.wait(10)
        real_swap(client, table, new_index, old)
        batch_client.swapped.set()
        batch.join()

    monkeypatch.setattr(reindex, "swap_alias", swap_during_a_batch)
    # the block phase's write block then comes with the swap itself (swap_alias blocks first)
    monkeypatch.setattr(reindex, "block_writes", lambda *_: None)
    # when the table is reindexed
    options = ReindexOptions(segments=1)
    reindex_table(stack.config, stack.sinks, stack.table, options=options)
    # then the batch acknowledged the change, and search, on the new index, shows it
    (outcome,) = outcomes
    assert not outcome.failed_sequence_numbers
    assert stack.indexed()["t|v1"]["category"] == "hats"
    assert stack.indexed() == stack.scanned()


def test_a_reindex_that_crashed_after_the_swap_resumes_with_the_catch_up(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the swap and the catch-up: the next run finds it swapped, catches up."""
    # given a reindex that dies right after its swap
    stack.put(_item("u", "shoes"))
    stack.deliver()
    real_catch_up = reindex.catch_up

    def crash(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(reindex, "catch_up", crash)
    options = ReindexOptions(segments=1)
    with pytest.raises(KeyboardInterrupt):
        reindex_table(stack.config, stack.sinks, stack.table, options=options)
    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [
        f"{stack.index}-000002"
    ]
    # when it runs again
    ran: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> int:
        ran.append(args[4])
        return real_catch_up(*args, **kwargs)

    monkeypatch.setattr(reindex, "catch_up", counted)
    result = reindex_table(stack.config, stack.sinks, stack.table, options=options)
    # then it resumed into the same index, only to catch up, and finished
    assert result.indices == ((stack.index, f"{stack.index}-000002", f"{stack.index}-000001"),)
    assert ran == [f"{stack.index}-000002"]
    assert not (tmp_path / "state.json").exists()
    assert stack.indexed() == stack.scanned()
