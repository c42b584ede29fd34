"""The port contracts (tests/contracts.py) on the in-memory fakes (tests/fakes.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.contracts import (
    AdminContract,
    CacheContract,
    ItemsContract,
    ItemsScanContract,
    JobsContract,
    LettersContract,
    SearchContract,
)
from tests.fakes import FakeAdmin, FakeCache, FakeItems, FakeJobs, FakeLetters, FakeSearch


class TestFakeSearch(SearchContract):
    @pytest.fixture
    def search(self) -> FakeSearch:
        return FakeSearch()

    @pytest.fixture
    def alias(self, search: FakeSearch) -> str:
        search.create("catalog")
        return "catalog"

    @pytest.fixture
    def document(self, search: FakeSearch) -> Callable[[str, str], dict[str, Any] | None]:
        return search.document


class TestFakeCache(CacheContract):
    @pytest.fixture
    def cache(self) -> FakeCache:
        return FakeCache()

    @pytest.fixture
    def put_cache(self, cache: FakeCache) -> Callable[[str, bytes], None]:
        return cache.values.__setitem__


class TestFakeItems(ItemsContract, ItemsScanContract):
    @pytest.fixture
    def items(self) -> FakeItems:
        return FakeItems()

    @pytest.fixture
    def table(self) -> str:
        return "catalog"

    @pytest.fixture
    def put_item(self, items: FakeItems) -> Callable[[dict[str, Any]], None]:
        return lambda item: items.put("catalog", item, ("pk", "sk"))


class TestFakeLetters(LettersContract):
    @pytest.fixture
    def letters(self) -> FakeLetters:
        return FakeLetters()

    @pytest.fixture
    def written_letters(self, letters: FakeLetters) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [letter.to_entry() for letter in letters.letters]


class TestFakeAdmin(AdminContract):
    @pytest.fixture
    def search(self) -> FakeSearch:
        return FakeSearch()

    @pytest.fixture
    def admin(self, search: FakeSearch) -> FakeAdmin:
        return FakeAdmin(search)

    @pytest.fixture
    def alias(self, search: FakeSearch) -> str:
        search.create("catalog")
        return "catalog"


class TestFakeJobs(JobsContract):
    @pytest.fixture
    def jobs(self) -> FakeJobs:
        return FakeJobs()
