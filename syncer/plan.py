"""Plan, without I/O, what each key change does to OpenSearch and which Redis keys it clears."""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from syncer.coalesce import KeyChange
from syncer.config import TableConfig
from syncer.errors import PoisonRecordError
from syncer.records import padded_sequence
from syncer.search import SYNCER_FIELD, DocumentWrite, IndexedDocument, WriteKind

_MISSING = object()


def is_newer(change: KeyChange, indexed: IndexedDocument | None) -> bool:
    """Whether the change's latest record is newer than what the index holds.

    A document without a sequence number came from a full scan; any stream change is allowed
    to replace it, which the next stream record of the key keeps correct (docs/ordering.md).
    """
    if indexed is None or indexed.sequence_number is None:
        return True
    return change.latest.sequence_number > indexed.sequence_number


def document_body(
    item: Mapping[str, Any],
    table: TableConfig,
    sequence_number: int | None,
    changed_at: float | None,
    scanned_at: float | None = None,
) -> dict[str, Any]:
    """The ``_source`` of an item: its attributes minus excluded ones, plus ``_syncer``.

    Stream changes carry their sequence number; a full scan has none and says when it read.
    """
    body = dict(item)
    for name in table.exclude_attributes:  # usually none or a few: cheaper than filtering all
        body.pop(name, None)
    if SYNCER_FIELD in body:
        raise PoisonRecordError(
            f"item has an attribute named {SYNCER_FIELD!r}, which syncer reserves; add it to "
            f"exclude_attributes of table {table.name!r}"
        )
    body[SYNCER_FIELD] = _syncer_meta(table, sequence_number, changed_at, deleted=False)
    if scanned_at is not None:
        body[SYNCER_FIELD]["scanned_at"] = int(scanned_at * 1000)
    return body


def tombstone_body(
    table: TableConfig, sequence_number: int | None, changed_at: float | None, ttl: bool
) -> dict[str, Any]:
    """A deleted item's document: only ``_syncer``, so no older change can resurrect it."""
    meta = _syncer_meta(table, sequence_number, changed_at, deleted=True)
    meta["ttl"] = ttl
    return {SYNCER_FIELD: meta}


def _syncer_meta(
    table: TableConfig, sequence_number: int | None, changed_at: float | None, deleted: bool
) -> dict[str, Any]:
    meta: dict[str, Any] = {"table": table.name, "deleted": deleted}
    if sequence_number is not None:
        meta["seq"] = padded_sequence(sequence_number)
    if changed_at is not None:
        meta["changed_at"] = int(changed_at * 1000)
    return meta


def plan_document_write(
    change: KeyChange,
    table: TableConfig,
    indexed: IndexedDocument | None,
    current_item: Mapping[str, Any] | object | None = _MISSING,
    index: str | None = None,
) -> DocumentWrite | None:
    """The write that brings the index to the change's state, or None when it is already newer.

    ``current_item`` is the item read from the table for streams without a new image
    (KEYS_ONLY, OLD_IMAGE); None there means the item is gone. ``index`` is the concrete index
    the indexed state was read from (default: the table's alias).
    """
    if not is_newer(change, indexed):
        return None
    latest = change.latest
    ref = (index or table.index, change.document_id)
    at = latest.approximate_creation_s
    if latest.is_remove:
        body = tombstone_body(table, latest.sequence_number, at, latest.is_ttl_delete)
        return DocumentWrite(ref, WriteKind.TOMBSTONE, body, indexed)
    if latest.new_image is not None:
        item: Mapping[str, Any] | None = latest.new_image
    elif current_item is _MISSING:
        raise ValueError(f"change of {change.document_id!r} needs the item read from the table")
    else:
        item = current_item  # type: ignore[assignment]
    if item is None:
        return DocumentWrite(
            ref,
            WriteKind.TOMBSTONE,
            tombstone_body(table, latest.sequence_number, at, False),
            indexed,
        )
    return DocumentWrite(
        ref, WriteKind.INDEX, document_body(item, table, latest.sequence_number, at), indexed
    )


def _render(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal | float):
        return str(value)
    return None


_Template = tuple[tuple[str, str | None], ...]  # (literal text, attribute name or None)
_NO_ATTRIBUTES: Mapping[str, Any] = {}


@functools.lru_cache(maxsize=256)  # templates are few: each is split once
def _parse_template(template: str) -> _Template:
    """A cache key template split into literals and attribute names."""
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))


@functools.lru_cache(maxsize=256)
def _parse_templates(templates: tuple[str, ...]) -> tuple[_Template, ...]:
    """All of a table's templates, parsed (keyed by the tuple of templates)."""
    return tuple(_parse_template(template) for template in templates)


def _fill(parsed: _Template, first: Mapping[str, Any], then: Mapping[str, Any]) -> str | None:
    """Render with the attributes of ``{**then, **first}``, without building that dict."""
    text = ""
    for literal, name in parsed:
        if name is None:
            text += literal
            continue
        value = first[name] if name in first else then.get(name)
        rendered = value if type(value) is str else _render(value)
        if rendered is None:
            return None
        text += literal + rendered
    return text


def render_cache_key(template: str, attributes: Mapping[str, Any]) -> str | None:
    """Fill a template such as ``product:{pk}``; None when a placeholder's attribute is absent."""
    return _fill(_parse_template(template), _NO_ATTRIBUTES, attributes)


def plan_cache_keys(
    change: KeyChange,
    table: TableConfig,
    extra_states: Iterable[Mapping[str, Any] | None] = (),
) -> set[str]:
    """Every cache key (item and search-derived) any state of the item in this batch maps to.

    Old and new images of every record count, plus ``extra_states`` (the indexed document and
    the item read from the table), so a change that moves an item clears both places.
    """
    if not table.cache_keys and not table.search_cache_keys:
        return set()
    # Each state is an image with its record's key attributes on top: (key, image) pairs.
    states: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for record in change.records:
        keys = record.keys
        old_image, new_image = record.old_image, record.new_image
        if old_image is not None:
            states.append((keys, old_image))
        if new_image is not None:
            states.append((keys, new_image))
        elif old_image is None:
            # The key alone renders a subset of what key + image renders: only without images.
            states.append((keys, _NO_ATTRIBUTES))
    keys = change.latest.keys
    for state in extra_states:
        if state is not None:
            states.append((keys, state))
    all_templates = table.cache_keys
    if table.search_cache_keys:  # invalidated together, after a bulk that waited (bulk_refresh)
        all_templates += table.search_cache_keys
    templates = _parse_templates(all_templates)
    cache_keys = set()
    for first, then in states:
        for parsed in templates:
            rendered = _fill(parsed, first, then)
            if rendered is not None:
                cache_keys.add(rendered)
    return cache_keys


def bulk_refresh(tables: Iterable[TableConfig]) -> str | None:
    """The ``refresh`` of a batch's ``_bulk``: ``"true"`` if a table has search cache keys.

    Cache keys are invalidated after the bulk answers. With ``refresh=true`` the bulk refreshes
    the shards it wrote before answering, so a cache refilled from a search query after the
    invalidation sees the writes. ``wait_for`` would add no refresh but hold each batch up to a
    refresh interval, item keys included (docs/cache-consistency.md, bench/search_refresh.py).
    Other tables keep the index's own refresh.
    """
    return "true" if any(table.search_cache_keys for table in tables) else None
