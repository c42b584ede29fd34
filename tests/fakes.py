"""In-memory fakes of syncer's ports, for unit tests of the pipeline and the commands.

Each behaves as its real adapter does on the points tests/contracts.py checks, and that suite
runs against the fake (tests/unit/test_port_contracts.py) and against the real adapter on the
real services (tests/integration/test_port_contracts.py), so a fake cannot drift from what it
stands for. Failures are injected per call (``fail_next``) or per document (``item_statuses``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from syncer.config import ResilienceConfig
from syncer.core import jsoncodec
from syncer.core.attributes import decode_item
from syncer.core.deadline import Deadline
from syncer.core.documents import (
    SYNCER_FIELD,
    DocumentRef,
    DocumentWrite,
    ReadState,
    TargetState,
    WriteKind,
    indexed_document,
)
from syncer.core.keys import boto_key, key_document_id
from syncer.core.rounds import write_documents
from syncer.core.versions import read_version
from syncer.core.writes import (
    ApplyResult,
    ItemResult,
    ItemStatus,
    Planner,
    SentChunk,
    WriteOptions,
)
from syncer.errors import DownstreamUnavailableError, SearchUnavailableError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Downstream, reported_failure
from syncer.sinks.search.bulk import item_result

# Retries as the integration config has them, without the waiting.
FAST = ResilienceConfig(
    max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, max_retry_time_s=1.0
)


_DEFAULTS = WriteOptions()


def guard(name: str) -> Downstream:
    return Downstream(name, FAST)


class _Failures:
    """Errors to raise on the next calls of a port (``fail_next.append(error)``), each call
    through the port's guard, retried as the real adapter's is."""

    def __init__(self, name: str) -> None:
        self.guard = guard(name)
        self.fail_next: list[Exception] = []
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.fail_next:
            raise self.fail_next.pop(0)


class FakeSearch(_Failures):
    """OpenSearch in memory: aliases on concrete indices, documents with ``_seq_no``, ``_bulk``
    items settled as OpenSearch settles them (``create`` 409 when present, ``if_seq_no``
    409 when changed), through the same ``write_documents`` loop as the real adapter."""

    def __init__(self) -> None:
        super().__init__("opensearch")
        self.aliases: dict[str, str] = {}
        self.indices: dict[str, dict[str, tuple[dict[str, Any], int]]] = {}
        self.item_statuses: dict[str, list[int]] = {}  # doc id -> statuses its next items get
        self.bulk_requests = 0
        self.documents_read = 0  # refs whose indexed state a read_round looked up
        self.refreshes: list[str] = []

    def create(self, alias: str) -> str:
        """A new concrete index behind ``alias`` (``syncer setup``)."""
        index = f"{alias}-000001"
        self.indices[index] = {}
        self.aliases[alias] = index
        return index

    def document(self, alias: str, doc_id: str) -> dict[str, Any] | None:
        found = self.indices[self.aliases[alias]].get(doc_id)
        return None if found is None else found[0]

    # The port (SearchStore)
    def apply(
        self, refs: Sequence[DocumentRef], plan: Planner, options: WriteOptions = _DEFAULTS
    ) -> ApplyResult:
        return write_documents(self, refs, plan, options)

    def attempts(self, deadline: Deadline | None) -> Iterable[AbstractContextManager[Any]]:
        return self.guard.retrying(deadline)

    def failure(self, error: Exception) -> str:
        return reported_failure(error, "OpenSearch write")

    def read_round(
        self,
        refs: Sequence[DocumentRef],
        fields: Sequence[str],
        optional_aliases: frozenset[str],
        deadline: Deadline | None,
        *,
        read: bool,
        absent: Container[DocumentRef] = frozenset(),
    ) -> dict[DocumentRef, TargetState]:
        def read_all() -> dict[DocumentRef, TargetState]:
            self._call()
            targets: dict[DocumentRef, TargetState] = {}
            for alias, doc_id in refs:
                index = self.aliases.get(alias)
                if index is None:
                    if alias in optional_aliases:
                        continue
                    raise SearchUnavailableError(
                        f"index_not_found_exception: no such index [{alias}]: run `syncer setup`"
                    )
                assumed = not read or (alias, doc_id) in absent
                self.documents_read += 0 if assumed else 1
                found = None if assumed else self.indices[index].get(doc_id)
                document = None
                if found is not None:
                    wanted = {SYNCER_FIELD, *fields}
                    source = {k: v for k, v in found[0].items() if k in wanted}
                    document = indexed_document(source, found[1], 1)
                targets[(alias, doc_id)] = TargetState(alias if assumed else index, document)
            return targets

        return self.guard.call(read_all)

    def send_round(
        self,
        writes: Sequence[DocumentWrite],
        refresh: str | None,
        deadline: Deadline | None,
        aliases: frozenset[str] = frozenset(),
    ) -> Iterator[SentChunk]:
        unencodable: list[tuple[DocumentWrite, str]] = []
        encodable: list[DocumentWrite] = []
        for write in writes:
            try:
                jsoncodec.dumps(write.body)
            except (TypeError, ValueError) as error:
                unencodable.append((write, f"document cannot be encoded as JSON: {error}"))
                continue
            encodable.append(write)
        if encodable:
            started = time.perf_counter()
            results = self.guard.call(self._bulk, encodable, refresh)
            yield SentChunk(encodable, results, time.perf_counter() - started)
        if unencodable:
            yield SentChunk((), {}, 0.0, unencodable)

    def _bulk(
        self, writes: Sequence[DocumentWrite], refresh: str | None
    ) -> dict[DocumentRef, ItemResult]:
        self._call()
        self.bulk_requests += 1
        if refresh is not None:
            self.refreshes.append(refresh)
        return {write.ref: self._item(write) for write in writes}

    def _item(self, write: DocumentWrite) -> ItemResult:
        index, doc_id = write.ref
        index = self.aliases.get(index, index)  # a write through the alias (a create unread)
        action = "delete" if write.kind is WriteKind.DELETE else "index"
        if index not in self.indices:  # never created by a write (require_alias)
            error = {"type": "index_not_found_exception", "reason": f"no such index [{index}]"}
            return item_result({action: {"status": 404, "error": error}})
        scripted = self.item_statuses.get(doc_id)
        if scripted:
            status = scripted.pop(0)
            return item_result({action: {"status": status, "error": {"type": "injected"}}})
        documents = self.indices[index]
        current = documents.get(doc_id)
        expected = write.expected
        if expected is None and current is not None:
            return item_result({"create": {"status": 409, "error": {"type": "conflict"}}})
        if expected is not None and (current is None or current[1] != expected.seq_no):
            return item_result({action: {"status": 409, "error": {"type": "conflict"}}})
        if write.kind is WriteKind.DELETE:
            del documents[doc_id]
        else:
            documents[doc_id] = (dict(write.body), 0 if current is None else current[1] + 1)
        return ItemResult(ItemStatus.OK)

    def refresh(self, alias: str) -> None:
        self.refreshes.append(alias)

    def alias_exists(self, alias: str) -> bool:
        return alias in self.aliases

    def mget(self, docs: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
        hits = []
        for doc in docs:
            index = self.aliases.get(doc["_index"], doc["_index"])
            found = self.indices.get(index, {}).get(doc["_id"])
            hit: dict[str, Any] = {"_index": index, "_id": doc["_id"], "found": found is not None}
            if found is not None:
                hit.update({"_source": found[0], "_seq_no": found[1], "_primary_term": 1})
            hits.append(hit)
        return hits

    def search(self, alias: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError("FakeSearch has no query engine")

    def scroll(self, alias: str, body: Mapping[str, Any], page_size: int) -> Iterator[list[Any]]:
        raise NotImplementedError("FakeSearch has no query engine")

    def count(self, alias: str, query: Mapping[str, Any]) -> int:
        raise NotImplementedError("FakeSearch has no query engine")

    def indices_of(self, alias: str) -> list[str]:
        return [self.aliases[alias]]


class FakeCache(_Failures):
    """Redis in memory: values by key; ``invalidate`` deletes them and counts those that existed."""

    def __init__(self) -> None:
        super().__init__("redis")
        self.values: dict[str, bytes] = {}
        self.invalidated: list[set[str]] = []  # the keys of each invalidate call

    def invalidate(self, keys: Collection[str], deadline: Deadline | None = None) -> int:
        if not keys:
            return 0

        def delete() -> int:
            self._call()
            self.invalidated.append(set(keys))
            return sum(1 for key in keys if self.values.pop(key, None) is not None)

        existed: int = self.guard.call_with_retry(delete, deadline=deadline)
        return existed

    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.values.get(key) for key in keys]


class FakeItems(_Failures):
    """DynamoDB tables in memory, items as boto3 types them, read with a read version."""

    def __init__(self) -> None:
        super().__init__("dynamodb")
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}  # table -> doc id -> item
        self.schemas: dict[str, dict[str, str]] = {}

    def put(self, table: str, item: Mapping[str, Any], key_names: Sequence[str]) -> None:
        """Store a boto3-typed item (``{"pk": {"S": "p-1"}, ...}``)."""
        typed = dict(item)
        key = {name: typed[name] for name in key_names}
        self.tables.setdefault(table, {})[key_document_id(key)] = typed

    def describe(self, table: str) -> dict[str, Any]:
        return {"TableName": table}

    def key_schema(self, table: str) -> dict[str, str]:
        return self.schemas.get(table, {"pk": "S", "sk": "S"})

    def read(
        self,
        table: str,
        keys: Sequence[Mapping[str, Mapping[str, Any]]],
        deadline: Deadline | None = None,
        ids: Sequence[str] | None = None,
    ) -> dict[str, ReadState]:
        started = time.time()
        self.guard.call_with_retry(self._call, deadline=deadline)
        rows = self.tables.get(table, {})
        version = read_version(started, time.time())
        states = {}
        wanted = ids if ids is not None else [key_document_id(boto_key(key)) for key in keys]
        for doc_id in wanted:
            found = rows.get(doc_id)
            states[doc_id] = ReadState(None if found is None else decode_item(found), version)
        return states

    def scan(self, table: str, **_: Any) -> Iterator[Any]:
        raise NotImplementedError("FakeItems does not scan")


class FakeLetters(_Failures):
    """The dead letters in memory: every letter written, or the injected error."""

    def __init__(self) -> None:
        super().__init__("deadletter")
        self.letters: list[DeadLetter] = []

    def write(self, letters: Sequence[DeadLetter], deadline: Deadline | None = None) -> None:
        def append() -> None:
            self._call()
            self.letters.extend(letters)

        self.guard.call_with_retry(append, deadline=deadline)


def fake_sinks(
    search: FakeSearch | None = None,
    cache: FakeCache | None = None,
    items: FakeItems | None = None,
    letters: FakeLetters | None = None,
) -> Sinks:
    """``Sinks`` of in-memory fakes (no raw clients)."""
    search, cache = search or FakeSearch(), cache or FakeCache()
    items, letters = items or FakeItems(), letters or FakeLetters()
    return Sinks(
        search=search,
        cache=cache,
        items=items,
        letters=letters,
        guards=(search.guard, cache.guard, items.guard, letters.guard),
    )


def unavailable(what: str) -> DownstreamUnavailableError:
    """A transient failure of a downstream, as the adapters raise it."""
    return DownstreamUnavailableError(f"{what} is unavailable (injected)")
