"""In-memory fakes of syncer's ports, for unit tests of the pipeline and the commands.

Each behaves as its real adapter does on the points tests/contracts.py checks, and that suite
runs against the fake (tests/unit/test_port_contracts.py) and against the real adapter on the
real services (tests/integration/test_port_contracts.py), so a fake cannot drift from what it
stands for. Failures are injected per call (``fail_next``) or per document (``item_statuses``).
"""

from __future__ import annotations

import fnmatch
import time
import zlib
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
from syncer.core.jobs import Job
from syncer.core.keys import boto_key, key_document_id
from syncer.core.versions import read_version
from syncer.core.writes import (
    ItemResult,
    ItemStatus,
    SentChunk,
)
from syncer.errors import DownstreamUnavailableError, SearchUnavailableError
from syncer.sinks.deadletter import DeadLetter
from syncer.sinks.indices import LIVE_DOCUMENTS_FILTER
from syncer.sinks.items import ScanPage
from syncer.sinks.jobs import JobConflictError, JobStore, Stored
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Downstream, reported_failure
from syncer.sinks.search.admin import WRITE_BLOCK
from syncer.sinks.search.bulk import item_result

# Retries as the integration config has them, without the waiting.
FAST = ResilienceConfig(
    max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0, max_retry_time_s=1.0
)


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
        self.alias_lookups = 0  # current_indices calls
        self.last_seq_no = -1
        self.refreshes: list[str] = []
        # What the admin port (FakeAdmin) changes: alias filters, write-blocked indices.
        self.alias_filters: dict[str, Mapping[str, Any]] = {}
        self.blocked: set[str] = set()

    def create(self, alias: str) -> str:
        """A new concrete index behind ``alias`` (``syncer setup``: the alias hides tombstones)."""
        index = f"{alias}-000001"
        self.indices[index] = {}
        self.aliases[alias] = index
        self.alias_filters[alias] = LIVE_DOCUMENTS_FILTER
        return index

    def document(self, alias: str, doc_id: str) -> dict[str, Any] | None:
        found = self.indices[self.aliases[alias]].get(doc_id)
        return None if found is None else found[0]

    # The port (SearchStore): what write_documents needs of it (WriteRounds), then the rest
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
        exists: Mapping[str, bool] | None = None,
    ) -> dict[DocumentRef, TargetState]:
        # ``exists`` spares the real adapter a HEAD; the fake knows its aliases anyway.
        def read_all() -> dict[DocumentRef, TargetState]:
            self._call()
            targets: dict[DocumentRef, TargetState] = {}
            for alias, doc_id in refs:
                index = self.aliases.get(alias, alias if alias in self.indices else None)
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
        if index in self.blocked:  # index.blocks.write: OpenSearch answers 403
            error = {"type": "cluster_block_exception", "reason": f"index [{index}] blocked"}
            return item_result({action: {"status": 403, "error": error}})
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
            # One sequence per fake, as OpenSearch keeps one per shard: a state's _seq_no is
            # never seen again in its index, even after a delete.
            self.last_seq_no += 1
            documents[doc_id] = (dict(write.body), self.last_seq_no)
        if write.kind is WriteKind.DELETE:
            return ItemResult(ItemStatus.OK)
        written = {"_index": index, "_seq_no": documents[doc_id][1], "_primary_term": 1}
        return ItemResult(ItemStatus.OK, "", written)

    def current_indices(
        self, aliases: Collection[str], deadline: Deadline | None
    ) -> Mapping[str, str | None]:
        self._call()
        self.alias_lookups += 1
        return {alias: self.aliases[alias] for alias in aliases if alias in self.aliases}

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
        self.guard.call_with_retry(self._call)
        return query_hits(self, alias, body)[: int(body.get("size", 10))]

    def scroll(self, alias: str, body: Mapping[str, Any], page_size: int) -> Iterator[list[Any]]:
        self.guard.call_with_retry(self._call)
        hits = query_hits(self, alias, body)  # a scroll sees the index as it began
        for start in range(0, len(hits), page_size):
            yield hits[start : start + page_size]

    def count(self, alias: str, query: Mapping[str, Any]) -> int:
        self.guard.call_with_retry(self._call)
        return len(query_hits(self, alias, {"query": query}))

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

    def scan(
        self,
        table: str,
        *,
        segment: int = 0,
        total_segments: int = 1,
        start_key: Mapping[str, Any] | None = None,
        page_size: int = 1000,
        limit: int | None = None,
    ) -> Iterator[ScanPage]:
        """A segment's items in pages (by document id), each page with its read interval and
        the key to go on from (None on the last), as a consistent parallel Scan gives them."""
        rows = sorted(self.tables.get(table, {}).items())
        mine = [(d, item) for d, item in rows if zlib.crc32(d.encode()) % total_segments == segment]
        if start_key is not None:
            after = key_document_id(dict(start_key))
            mine = [(d, item) for d, item in mine if d > after]
        if limit is not None:
            mine = mine[:limit]
        names = list(self.key_schema(table))
        for start in range(0, max(len(mine), 1), page_size):
            started = time.time()
            self.guard.call_with_retry(self._call)
            page = [dict(item) for _, item in mine[start : start + page_size]]
            more = start + page_size < len(mine)
            last = {name: page[-1][name] for name in names} if more and page else None
            yield ScanPage(page, last, read_version(started, time.time()))


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
    jobs: FakeJobs | None = None,
) -> Sinks:
    """``Sinks`` of in-memory fakes (no raw clients); the admin port works on ``search``."""
    search, cache = search or FakeSearch(), cache or FakeCache()
    items, letters = items or FakeItems(), letters or FakeLetters()
    return Sinks(
        search=search,
        cache=cache,
        items=items,
        letters=letters,
        guards=(search.guard, cache.guard, items.guard, letters.guard),
        admin=FakeAdmin(search),
        jobs=jobs or FakeJobs(),
    )


def unavailable(what: str) -> DownstreamUnavailableError:
    """A transient failure of a downstream, as the adapters raise it."""
    return DownstreamUnavailableError(f"{what} is unavailable (injected)")


# ---------------------------------------------------------------------------------------------
# The commands' side: the admin port, the jobs' records, and the few queries the commands send.
# ---------------------------------------------------------------------------------------------


def _field(source: Mapping[str, Any], path: str) -> Any:
    value: Any = source
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def matches(query: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """Whether a document matches ``query``: the query shapes syncer's commands send (match_all,
    term, range, bool of filter/must/must_not, function_score); any other is refused."""
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "term":
        ((path, wanted),) = spec.items()
        wanted = wanted["value"] if isinstance(wanted, Mapping) else wanted
        return bool(_field(source, path) == wanted)
    if kind == "range":
        ((path, bounds),) = spec.items()
        value = _field(source, path)
        if value is None:
            return False
        checks = {"lt": value.__lt__, "lte": value.__le__, "gt": value.__gt__, "gte": value.__ge__}
        return all(checks[op](bound) for op, bound in bounds.items())
    if kind == "bool":
        wanted = [*spec.get("filter", []), *spec.get("must", [])]
        return all(matches(q, source) for q in wanted) and not any(
            matches(q, source) for q in spec.get("must_not", [])
        )
    if kind == "function_score":
        return matches(spec.get("query", {"match_all": {}}), source)
    raise NotImplementedError(f"the fake's query engine has no {kind!r}")


def _shown(source: Mapping[str, Any], spec: Any) -> dict[str, Any] | None:
    if spec is False:
        return None
    if isinstance(spec, list):
        return {k: v for k, v in source.items() if k in spec}
    if isinstance(spec, Mapping):
        return {k: v for k, v in source.items() if k not in spec.get("excludes", [])}
    return dict(source)


def query_hits(search: FakeSearch, target: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The hits of ``body`` in each name of ``target`` (an alias, with its filter, or an index)."""
    hits = []
    query = body.get("query", {"match_all": {}})
    for name in target.split(","):
        index = search.aliases.get(name, name)
        if index not in search.indices:
            raise SearchUnavailableError(f"index_not_found_exception: no such index [{name}]")
        alias_filter = search.alias_filters.get(name) if name in search.aliases else None
        piece = body.get("slice")
        for doc_id, (source, seq_no) in sorted(search.indices[index].items()):
            if alias_filter is not None and not matches(alias_filter, source):
                continue
            if piece and hash(doc_id) % piece["max"] != piece["id"]:
                continue
            if matches(query, source):
                hit = {"_index": index, "_id": doc_id, "_seq_no": seq_no, "_primary_term": 1}
                shown = _shown(source, body.get("_source", True))
                if shown is not None:
                    hit["_source"] = shown
                hits.append(hit)
    return hits


class AliasMissingError(Exception):
    """What the fake raises where OpenSearch answers 404 to an alias or index call."""


class FakeAdmin(_Failures):
    """The admin port in memory, over a ``FakeSearch``'s indices and aliases (one index per
    alias, as syncer keeps them)."""

    def __init__(self, search: FakeSearch) -> None:
        super().__init__("opensearch")
        self.search = search

    def _do(self, action: Any, *args: Any) -> Any:
        def once() -> Any:
            self._call()
            return action(*args)

        return self.search.guard.call_with_retry(once)

    def _index(self, name: str) -> str:
        return self.search.aliases.get(name, name)

    def indices_of(self, alias: str) -> list[str]:
        return self._do(
            lambda: [self.search.aliases[alias]] if alias in self.search.aliases else []
        )

    def aliases_of(self, index: str) -> list[str]:
        return self._do(lambda: sorted(a for a, i in self.search.aliases.items() if i == index))

    def indices_matching(self, pattern: str) -> list[str]:
        return self._do(lambda: sorted(fnmatch.filter(self.search.indices, pattern)))

    def index_exists(self, index: str) -> bool:
        return self._do(lambda: index in self.search.indices)

    def create_index(self, index: str, body: Mapping[str, Any] | None = None) -> bool:
        def create() -> bool:
            if index in self.search.indices:
                return False
            self.search.indices[index] = {}
            return True

        return bool(self._do(create))

    def put_alias(self, index: str, alias: str) -> None:
        self.update_aliases([{"add": {"index": index, "alias": alias}}])

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """All the actions or none (one ``POST _aliases``)."""

        def update() -> None:
            aliases, filters = dict(self.search.aliases), dict(self.search.alias_filters)
            for action in actions:
                ((kind, spec),) = action.items()
                index, alias = spec["index"], spec["alias"]
                if index not in self.search.indices:
                    raise AliasMissingError(f"index_not_found_exception: no such index [{index}]")
                if kind == "remove":
                    if aliases.get(alias) != index:
                        raise AliasMissingError(f"aliases [{alias}] missing on [{index}]")
                    del aliases[alias]
                    filters.pop(alias, None)
                elif aliases.get(alias, index) != index:
                    raise NotImplementedError("the fake keeps one index per alias")
                else:
                    aliases[alias] = index
                    filters.pop(alias, None)
                    if "filter" in spec:
                        filters[alias] = spec["filter"]
            self.search.aliases, self.search.alias_filters = aliases, filters

        self._do(update)

    def delete_index(self, index: str) -> None:
        def delete() -> None:
            self.search.indices.pop(index, None)
            self.search.blocked.discard(index)
            for alias in [a for a, i in self.search.aliases.items() if i == index]:
                del self.search.aliases[alias]
                self.search.alias_filters.pop(alias, None)

        self._do(delete)

    def index_settings(self, index: str, name: str | None = None) -> dict[str, Any]:
        def settings() -> dict[str, Any]:
            index_settings: dict[str, Any] = {"number_of_shards": "1"}
            if index in self.search.blocked:
                index_settings["blocks"] = {"write": "true"}
            if name == WRITE_BLOCK:
                index_settings.pop("number_of_shards")
            return {index: {"settings": {"index": index_settings}}}

        return dict(self._do(settings))

    def put_index_settings(self, index: str, body: Mapping[str, Any]) -> None:
        def put() -> None:
            if set(body) != {WRITE_BLOCK}:
                raise NotImplementedError(f"the fake sets only {WRITE_BLOCK}")
            if body[WRITE_BLOCK]:
                self.search.blocked.add(index)
            else:
                self.search.blocked.discard(index)

        self._do(put)

    def write_blocked(self, index: str) -> bool:
        return self._do(lambda: index in self.search.blocked)

    def set_write_block(self, index: str, blocked: bool) -> None:
        self.put_index_settings(index, {WRITE_BLOCK: True if blocked else None})

    def primary_shards(self, index: str) -> int:
        return 1

    def documents(
        self, index: str, ids: Sequence[str], *, source: bool = True
    ) -> dict[str, dict[str, Any]]:
        def read() -> dict[str, dict[str, Any]]:
            held = self.search.indices.get(self._index(index), {})
            found = {}
            for doc_id in ids:
                if doc_id in held:
                    body, seq_no = held[doc_id]
                    doc: dict[str, Any] = {"_id": doc_id, "found": True, "_seq_no": seq_no}
                    doc["_primary_term"] = 1
                    if source:
                        doc["_source"] = dict(body)
                    found[doc_id] = doc
            return found

        return dict(self._do(read)) if ids else {}


class FakeJobs(JobStore):
    """The jobs' records in memory: conditional writes by sequence number, as ``JobStore``'s
    are on OpenSearch (its ``update`` loop runs unchanged on top)."""

    def __init__(self) -> None:  # no client: nothing of JobStore's own state is used
        self.records: dict[str, Stored] = {}
        self._seq = 0

    def get(self, table: str) -> Stored | None:
        return self.records.get(table)

    def put(self, job: Job, expected: Stored | None) -> Stored:
        current = self.records.get(job.key)
        if (current is None) != (expected is None) or (
            current is not None and expected is not None and current.seq_no != expected.seq_no
        ):
            raise JobConflictError(f"the job of {job.key!r} changed meanwhile")
        self._seq += 1
        stored = Stored(Job.from_json(job.to_json()), self._seq, 1)
        self.records[job.key] = stored
        return stored

    def all(self) -> list[Job]:
        return [stored.job for stored in self.records.values()]


def unconnected_sinks() -> Sinks:
    """The real adapters around clients that never connect (nothing is sent by building them)."""
    from syncer.config import OpenSearchConfig, RedisConfig
    from syncer.sinks.cache import RedisHandle
    from syncer.sinks.deadletter import FileDeadLetters
    from syncer.sinks.search import make_client

    return Sinks.of_clients(
        opensearch=make_client(OpenSearchConfig()),
        redis=RedisHandle(RedisConfig()),
        dynamodb=None,
        deadletters=FileDeadLetters("/nonexistent/deadletter.jsonl"),
        opensearch_guard=guard("opensearch"),
        redis_guard=guard("redis"),
        dynamodb_guard=guard("dynamodb"),
        deadletter_guard=guard("deadletter"),
    )
