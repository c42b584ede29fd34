"""The port contracts (tests/contracts.py) on the real adapters and the real services: what the
in-memory fakes of tests/fakes.py are checked against."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from syncer.sinks.ports import CacheStore, DeadLetterStore, ItemStore, SearchStore
from tests.contracts import CacheContract, ItemsContract, LettersContract, SearchContract
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


class TestDynamoDbItems(ItemsContract):
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
