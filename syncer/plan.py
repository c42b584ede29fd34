"""Plan, without I/O, what each key change does to OpenSearch and which Redis keys it clears."""

from __future__ import annotations

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
    body = {name: value for name, value in item.items() if name not in table.exclude_attributes}
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


def render_cache_key(template: str, attributes: Mapping[str, Any]) -> str | None:
    """Fill a template such as ``product:{pk}``; None when a placeholder's attribute is absent."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        rendered = _render(attributes.get(name))
        if rendered is None:
            return None
        parts.append(rendered)
    return "".join(parts)


def plan_cache_keys(
    change: KeyChange,
    table: TableConfig,
    extra_states: Iterable[Mapping[str, Any] | None] = (),
) -> set[str]:
    """Every cache key any state of the item in this batch maps to.

    Old and new images of every record count, plus ``extra_states`` (the indexed document and
    the item read from the table), so a change that moves an item clears both places.
    """
    if not table.cache_keys:
        return set()
    states: list[Mapping[str, Any]] = []
    for record in change.records:
        for image in (record.old_image, record.new_image):
            if image is not None:
                states.append({**image, **record.keys})
        states.append(record.keys)
    keys = change.latest.keys
    states.extend({**state, **keys} for state in extra_states if state is not None)
    cache_keys = set()
    for state in states:
        for template in table.cache_keys:
            rendered = render_cache_key(template, state)
            if rendered is not None:
                cache_keys.add(rendered)
    return cache_keys
