"""A consistency check's reads: the item, its document through the alias, its cache keys.

For each sampled key: one consistent ``BatchGetItem`` (per table and 100 keys), one ``_mget``
through the alias (realtime, like verify), and one pipelined ``GET`` per cache key; then
``syncer.core.consistency.classify`` decides. docs/consistency.md has the cost per key.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from syncer.client.cachefill import decode_entry
from syncer.config import Config, TableConfig
from syncer.core.consistency import (
    CacheSeen,
    CheckResult,
    DocumentSeen,
    Observed,
    SampledWrite,
    WrittenKey,
    choose_samples,
    classify,
)
from syncer.core.documents import SYNCER_FIELD
from syncer.core.fingerprint import content_fingerprint
from syncer.core.plan import document_body
from syncer.core.routes import document_in, route_item
from syncer.core.versions import Version, version_from_meta
from syncer.errors import ConfigError, PoisonRecordError
from syncer.sinks.ports import Sinks
from syncer.sinks.search import raise_for_mget_error

_CONTENT = Version()  # a placeholder: fingerprints leave ``_syncer`` out


def sample_batch(
    written: Sequence[WrittenKey], config: Config, rng: random.Random, now_ms: int | None = None
) -> list[SampledWrite]:
    """The batch's written keys chosen at ``[consistency] sample_rate``, ready to be checked."""
    chosen = choose_samples(written, config.consistency.sample_rate, rng)
    at = int(time.time() * 1000) if now_ms is None else now_ms
    return [
        SampledWrite(
            table=key.table,
            index=key.index,
            document_id=key.document_id,
            keys=key.keys,
            version=key.version,
            fingerprint=_fingerprint(key.document, _index_table(config, key.table, key.index)),
            cache_keys=key.cache_keys,
            sampled_at_ms=at,
        )
        for key in chosen
    ]


def check_target(config: Config, sample: SampledWrite) -> None:
    """``PoisonRecordError`` unless the sample names a configured table and one of its indices."""
    try:
        _index_table(config, sample.table, sample.index)
    except ConfigError as error:
        raise PoisonRecordError(str(error)) from None


def _index_table(config: Config, table_name: str, index: str) -> TableConfig:
    """The one-index view of ``table_name`` that writes ``index`` (a route's, or its own)."""
    table = config.require_table(table_name)
    for route in table.resolved_routes:
        if route.index == index:
            return table.route_table(route)
    raise PoisonRecordError(f"table {table_name!r} writes no index {index!r}")


def _fingerprint(document: Mapping[str, Any] | None, table: TableConfig) -> str | None:
    if document is None:
        return None
    try:
        return content_fingerprint(document_body(document, table, _CONTENT))
    except PoisonRecordError:
        return "unindexable"


def _item_fingerprint(
    config: Config, sample: SampledWrite, item: Mapping[str, Any] | None
) -> str | None:
    """The item's content as its document in the sample's index would hold it; None if none."""
    table = config.require_table(sample.table)
    if table.routes:
        view = _index_table(config, sample.table, sample.index)
        route = next(r for r in table.resolved_routes if r.index == sample.index)
        return _fingerprint(document_in(route_item(table, item), route), view)
    return _fingerprint(item, table)


def run_checks(samples: Sequence[SampledWrite], config: Config, sinks: Sinks) -> list[CheckResult]:
    """Read and classify every sample; downstream errors propagate (the caller counts them)."""
    if not samples:
        return []
    items: dict[tuple[str, str], Mapping[str, Any] | None] = {}
    by_table: dict[str, list[SampledWrite]] = {}
    for sample in samples:
        by_table.setdefault(sample.table, []).append(sample)
    for table, table_samples in by_table.items():
        keys = list({s.document_id: s.keys for s in table_samples}.values())
        found = sinks.items.read(table, keys)
        items.update({(table, doc_id): state.item for doc_id, state in found.items()})
    documents = _read_documents(sinks, samples)
    cache = _read_cache(sinks, sorted({key for s in samples for key in s.cache_keys}))
    return [
        classify(
            sample,
            Observed(
                item_fingerprint=_item_fingerprint(
                    config, sample, items.get((sample.table, sample.document_id))
                ),
                document=documents[i],
                cache=tuple(cache[key] for key in sample.cache_keys if key in cache),
            ),
        )
        for i, sample in enumerate(samples)
    ]


def _read_documents(sinks: Sinks, samples: Sequence[SampledWrite]) -> list[DocumentSeen | None]:
    """Each sample's document through its alias (``_mget``, realtime, as verify reads)."""
    response = sinks.opensearch_guard.call_with_retry(
        sinks.opensearch.mget,
        body={"docs": [{"_index": s.index, "_id": s.document_id} for s in samples]},
        params={"realtime": "true"},
    )
    seen: list[DocumentSeen | None] = []
    for doc in response["docs"]:
        if "error" in doc:
            raise_for_mget_error(doc["error"])
        source = doc.get("_source") if doc.get("found") else None
        if source is None:
            seen.append(None)
            continue
        meta = source.get(SYNCER_FIELD) or {}
        deleted = bool(meta.get("deleted", False))
        fingerprint = None if deleted else content_fingerprint(source)
        seen.append(DocumentSeen(version_from_meta(meta), deleted, fingerprint))
    return seen


def _read_cache(sinks: Sinks, keys: Sequence[str]) -> dict[str, CacheSeen]:
    """The keys that hold a value, with its fill time; lease markers and absent keys left out."""
    if not keys:
        return {}

    def get_all() -> list[Any]:
        pipeline = sinks.redis.pipeline(transaction=False)
        for key in keys:
            pipeline.get(key)
        return list(pipeline.execute())

    replies = sinks.redis_guard.call_with_retry(get_all)
    held: dict[str, CacheSeen] = {}
    for key, reply in zip(keys, replies, strict=True):
        if reply is None:
            continue
        try:
            entry = decode_entry(bytes(reply))
        except ValueError:  # reserved-prefix bytes LeasedCache did not write: cannot be dated
            held[key] = CacheSeen(key, None)
            continue
        if entry is not None:  # None: a lease marker, a load under way
            held[key] = CacheSeen(key, entry.loaded_at_ms)
    return held
