"""The port contracts (tests/contracts.py) on the real adapters and the real services: what the
in-memory fakes of tests/fakes.py are checked against."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncer.sinks.jobs import JobStore
from syncer.sinks.ports import CacheStore, DeadLetterStore, ItemStore, SearchAdmin, SearchStore
from tests.contracts import (
    AdminContract,
    CacheContract,
    ItemsContract,
    ItemsScanContract,
    JobsContract,
    LettersContract,
    SearchContract,
)
from tests.integration.conftest import Stack


class TestOpenSearchSink(SearchContract):
    @pytest.fixture
    def search(self, stack: Stack) -> SearchStore:
        return stack.sinks.search

    @pytest.fixture
    def alias(self, stack: Stack) -> str:
        return stack.index

    @pytest.fixture
    def document(self, stack: Stack) -> Callable[[str, str], dict[str, Any] | None]:
        def read(alias: str, doc_id: str) -> dict[str, Any] | None:
            (hit,) = stack.sinks.search.mget([{"_index": alias, "_id": doc_id}])
            return hit["_source"] if hit.get("found") else None

        return read


class TestRedisCache(CacheContract):
    @pytest.fixture
    def cache(self, stack: Stack) -> CacheStore:
        return stack.sinks.cache

    @pytest.fixture
    def put_cache(self, stack: Stack) -> Callable[[str, bytes], None]:
        return lambda key, value: stack.sinks.redis.set(key, value, ex=60)


class TestDynamoDbItems(ItemsContract, ItemsScanContract):
    @pytest.fixture
    def items(self, stack: Stack) -> ItemStore:
        return stack.sinks.items

    @pytest.fixture
    def table(self, stack: Stack) -> str:
        return stack.table

    @pytest.fixture
    def put_item(self, stack: Stack) -> Callable[[dict[str, Any]], None]:
        return lambda item: stack.dynamodb.put_item(TableName=stack.table, Item=item)


class TestFileLetters(LettersContract):
    @pytest.fixture
    def letters(self, stack: Stack) -> DeadLetterStore:
        return stack.sinks.letters

    @pytest.fixture
    def written_letters(self, stack: Stack) -> Callable[[], list[dict[str, Any]]]:
        path = stack.config_path.parent / "deadletter.jsonl"
        return lambda: [json.loads(line) for line in path.read_text().splitlines() if line]


class TestOpenSearchAdmin(AdminContract):
    @pytest.fixture
    def admin(self, stack: Stack) -> SearchAdmin:
        return stack.sinks.admin

    @pytest.fixture
    def search(self, stack: Stack) -> SearchStore:
        return stack.sinks.search

    @pytest.fixture
    def alias(self, stack: Stack) -> str:
        return stack.index


def test_the_admin_port_moves_aliases_and_reads_settings(stack: Stack) -> None:
    """The typed admin port: aliases listed, added and swapped in one request, settings read."""
    # given the stack's alias on its versioned index, and a second index
    admin = stack.sinks.admin
    assert admin is not None
    (current,) = admin.indices_of(stack.index)
    other = f"{stack.index}-000009"
    stack.sinks.opensearch.indices.create(index=other)
    spare = f"{stack.index}-spare"
    try:
        # when an alias is put on it, and the main alias is swapped over in one request
        admin.put_alias(other, spare)
        admin.update_aliases(
            [
                {"remove": {"index": current, "alias": stack.index}},
                {"add": {"index": other, "alias": stack.index}},
            ]
        )
        # then each alias names its index, an unknown alias none, and settings are readable
        assert admin.indices_of(spare) == [other]
        assert admin.indices_of(stack.index) == [other]
        assert admin.indices_of(f"{stack.index}-nothing") == []
        admin.put_index_settings(other, {"index.blocks.write": True})
        settings = admin.index_settings(other, "index.blocks.write")
        assert settings[other]["settings"]["index"]["blocks"]["write"] == "true"
    finally:
        admin.put_index_settings(other, {"index.blocks.write": None})
        admin.delete_index(other)
    assert admin.indices_of(spare) == []


class TestOpenSearchJobs(JobsContract):
    @pytest.fixture
    def jobs(self, stack: Stack) -> Iterator[JobStore]:
        """A jobs index of the test's own (the shared syncer-jobs index is left alone)."""
        index = f"{stack.index}-jobs"
        yield JobStore(stack.sinks.opensearch, stack.sinks.opensearch_guard, index)
        stack.sinks.opensearch.indices.delete(index=index, params={"ignore_unavailable": "true"})
