"""Compare a table with its index and repair the drift (``syncer verify``).

The table is the truth. A document is *missing* when the item exists but search does not show
it, a *ghost* when search shows a document whose item is gone, and *differing* when their
content (attributes minus excluded ones) is not equal. ``--repair`` rewrites each drifted key
from a consistent read, with the same document mapping and the same conditional writes as the
stream path: a key the stream changes meanwhile answers 409 and is left to the stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncer import jsoncodec
from syncer.attributes import decode_item
from syncer.cache import invalidate
from syncer.config import Config, TableConfig
from syncer.pipeline import Sinks
from syncer.plan import document_body, render_cache_key, tombstone_body
from syncer.records import document_id
from syncer.search import (
    SYNCER_FIELD,
    DocumentWrite,
    ItemStatus,
    WriteKind,
    bulk_chunks,
    read_targets,
    send_bulk,
)

SCROLL_PAGE = 1000


@dataclass
class VerifyReport:
    table: str
    checked_items: int = 0
    checked_documents: int = 0
    missing: list[str] = field(default_factory=list)
    ghost: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    repaired: int = 0
    left_to_stream: int = 0
    typed_keys: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def drift(self) -> int:
        return len(self.missing) + len(self.ghost) + len(self.differing)


def content_fingerprint(source: Mapping[str, Any]) -> str:
    """A hash of a document's content, the same for a table item and its indexed document."""
    plain = {k: v for k, v in source.items() if k != SYNCER_FIELD}
    # Through stdlib json both sides get the same numbers: exact integers, floats for decimals.
    normalised = json.loads(jsoncodec.dumps(plain))
    return hashlib.sha256(json.dumps(normalised, sort_keys=True).encode()).hexdigest()


def _key_types(sinks: Sinks, table: str) -> dict[str, str]:
    """The table's key attributes and their types (S, N or B), hash key first."""
    description = sinks.dynamodb.describe_table(TableName=table)["Table"]
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    return {key["AttributeName"]: types[key["AttributeName"]] for key in description["KeySchema"]}


def _scan(sinks: Sinks, table: str, segment: int = 0, total: int = 1) -> Iterator[dict[str, Any]]:
    request: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "Segment": segment,
        "TotalSegments": total,
    }
    while True:
        page = sinks.dynamodb_guard.call_with_retry(sinks.dynamodb.scan, **request)
        yield from page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _table_fingerprints(
    table: TableConfig, key_names: list[str], items: Iterable[dict[str, Any]], report: VerifyReport
) -> dict[str, str]:
    """Content fingerprints by document id; the typed keys are kept for a repair's re-read."""
    fingerprints = {}
    for raw in items:
        item = decode_item(raw)
        doc_id = document_id({n: item[n] for n in key_names})
        fingerprints[doc_id] = content_fingerprint(document_body(item, table, None, None))
        report.typed_keys[doc_id] = {n: raw[n] for n in key_names}
    return fingerprints


def _index_documents(client: Any, alias: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every live document behind the alias (the alias filter hides tombstones)."""
    response = client.search(
        index=alias,
        body={"query": {"match_all": {}}, "size": SCROLL_PAGE, "sort": ["_doc"]},
        params={"scroll": "2m", "_source_excludes": SYNCER_FIELD},
    )
    scroll_id = response.get("_scroll_id")
    try:
        while response["hits"]["hits"]:
            for hit in response["hits"]["hits"]:
                yield hit["_id"], hit.get("_source") or {}
            response = client.scroll(body={"scroll_id": scroll_id, "scroll": "2m"})
            scroll_id = response.get("_scroll_id")
    finally:
        if scroll_id:
            client.clear_scroll(body={"scroll_id": [scroll_id]}, params={"ignore": "404"})


def verify_table(
    config: Config, sinks: Sinks, table_name: str, sample: int | None = None, repair: bool = False
) -> VerifyReport:
    """Compare table and index (all of it, or about ``sample`` keys each way) and maybe repair."""
    table = config.require_table(table_name)
    key_types = _key_types(sinks, table.name)
    key_names = list(key_types)
    report = VerifyReport(table.name)
    if sample is None:
        _compare_all(sinks, table, key_names, report)
    else:
        _compare_sample(sinks, table, key_types, sample, report)
    if repair and report.drift:
        _repair(config, sinks, table, key_names, report)
    return report


def _compare_all(
    sinks: Sinks, table: TableConfig, key_names: list[str], report: VerifyReport
) -> None:
    expected = _table_fingerprints(table, key_names, _scan(sinks, table.name), report)
    report.checked_items = len(expected)
    sinks.opensearch.indices.refresh(index=table.index)
    for doc_id, source in _index_documents(sinks.opensearch, table.index):
        report.checked_documents += 1
        wanted = expected.pop(doc_id, None)
        if wanted is None:
            report.ghost.append(doc_id)
        elif wanted != content_fingerprint(source):
            report.differing.append(doc_id)
    report.missing.extend(sorted(expected))


def _compare_sample(
    sinks: Sinks, table: TableConfig, key_types: dict[str, str], sample: int, report: VerifyReport
) -> None:
    key_names = list(key_types)
    rng = random.Random()
    description = sinks.dynamodb.describe_table(TableName=table.name)["Table"]
    total = max(1, min(1_000_000, math.ceil(int(description.get("ItemCount", 0)) / max(1, sample))))
    items = list(_scan(sinks, table.name, rng.randrange(total), total))[:sample]
    expected = _table_fingerprints(table, key_names, items, report)
    report.checked_items = len(expected)
    refs = [(table.index, doc_id) for doc_id in expected]
    for (_, doc_id), target in _read_sources(sinks, refs).items():
        if target is None or target.get(SYNCER_FIELD, {}).get("deleted"):
            report.missing.append(doc_id)
        elif content_fingerprint(target) != expected[doc_id]:
            report.differing.append(doc_id)
    sinks.opensearch.indices.refresh(index=table.index)  # search sees what was just written
    hits = sinks.opensearch.search(
        index=table.index,
        body={
            "size": sample,
            "query": {"function_score": {"random_score": {}}},
            "_source": key_names,
        },
    )["hits"]["hits"]
    report.checked_documents = len(hits)
    typed = [_typed_key(h["_source"], key_types) for h in hits]
    present = _items_by_id(sinks, table.name, key_names, [k for k in typed if k is not None])
    report.ghost.extend(h["_id"] for h in hits if present.get(h["_id"]) is None)


def _read_sources(
    sinks: Sinks, refs: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    response = sinks.opensearch.mget(body={"docs": [{"_index": i, "_id": d} for i, d in refs]})
    return {
        ref: (doc.get("_source") if doc.get("found") else None)
        for ref, doc in zip(refs, response["docs"], strict=True)
    }


def _typed_key(source: Mapping[str, Any], key_types: Mapping[str, str]) -> dict[str, Any] | None:
    """The DynamoDB key of an indexed document, typed as the key schema says.

    None when the document's key values cannot be a key of the table (absent, or of another
    type): no item can match it, so it is a ghost.
    """
    typed: dict[str, Any] = {}
    for name, kind in key_types.items():
        value = source.get(name)
        if kind == "S" and isinstance(value, str):
            typed[name] = {"S": value}
        elif kind == "N" and isinstance(value, int | float) and not isinstance(value, bool):
            typed[name] = {"N": str(value)}
        elif kind == "B" and isinstance(value, str):  # indexed as base64 text
            try:
                typed[name] = {"B": base64.b64decode(value, validate=True)}
            except (binascii.Error, ValueError):
                return None
        else:
            return None
    return typed


def _items_by_id(
    sinks: Sinks, table: str, key_names: list[str], typed_keys: list[dict[str, Any]]
) -> dict[str, dict[str, Any] | None]:
    """Consistent reads with BatchGetItem, by document id; None where the item is gone."""
    found: dict[str, dict[str, Any] | None] = {}
    for start in range(0, len(typed_keys), 100):
        pending = typed_keys[start : start + 100]
        wanted = [document_id(decode_item(k)) for k in pending]
        while pending:
            response = sinks.dynamodb_guard.call_with_retry(
                sinks.dynamodb.batch_get_item,
                RequestItems={table: {"Keys": pending, "ConsistentRead": True}},
            )
            for raw in response.get("Responses", {}).get(table, []):
                item = decode_item(raw)
                found[document_id({n: item[n] for n in key_names})] = item
            pending = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        for doc_id in wanted:
            found.setdefault(doc_id, None)
    return found


def _repair(
    config: Config, sinks: Sinks, table: TableConfig, key_names: list[str], report: VerifyReport
) -> None:
    """Rewrite drifted keys, conditional on the indexed state just read.

    Missing and differing keys are read again (consistently) and written with the indexed
    document's sequence number, so any newer stream change still wins. Ghosts become tombstones.
    """
    drifted = [*report.missing, *report.differing, *report.ghost]
    refs = [(table.index, doc_id) for doc_id in drifted]
    fields = sorted(table.cache_key_fields | set(key_names))
    targets = sinks.opensearch_guard.call_with_retry(read_targets, sinks.opensearch, refs, fields)
    reread = [
        report.typed_keys[d] for d in [*report.missing, *report.differing] if d in report.typed_keys
    ]
    current = _items_by_id(sinks, table.name, key_names, reread)
    writes: list[DocumentWrite] = []
    cache_keys: set[str] = set()
    for doc_id in drifted:
        target = targets[(table.index, doc_id)]
        indexed = target.document
        seq = indexed.sequence_number if indexed is not None else None
        item = current.get(doc_id)
        if item is not None:
            body = document_body(item, table, seq, None)
            writes.append(DocumentWrite((target.index, doc_id), WriteKind.INDEX, body, indexed))
        elif indexed is not None and not indexed.deleted:
            body = tombstone_body(table, seq, None, ttl=False)
            writes.append(DocumentWrite((target.index, doc_id), WriteKind.TOMBSTONE, body, indexed))
        for state in (item, indexed.fields if indexed else None):
            for template in table.cache_keys:
                key = render_cache_key(template, state or {})
                if key is not None:
                    cache_keys.add(key)
    limits = config.opensearch
    for chunk, payload in bulk_chunks(writes, limits.bulk_max_actions, limits.bulk_max_bytes):
        results = sinks.opensearch_guard.call_with_retry(
            send_bulk, sinks.opensearch, payload, chunk
        )
        for write in chunk:
            if results[write.ref].status is ItemStatus.OK:
                report.repaired += 1
            else:  # 409: the stream changed the key meanwhile and keeps it right
                report.left_to_stream += 1
    if cache_keys:
        sinks.redis_guard.call_with_retry(invalidate, sinks.redis, cache_keys)
