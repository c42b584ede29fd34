"""What a document holds: an item's ``_source`` or a tombstone, each with ``_syncer`` (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncer.config import TableConfig
from syncer.core.coalesce import KeyChange
from syncer.core.documents import SYNCER_FIELD
from syncer.core.versions import Version
from syncer.errors import PoisonRecordError

_MISSING = object()
Image = Mapping[str, Any]  # an item's attributes (DynamoDB values: any JSON-like type)


def document_body(item: Mapping[str, Any], table: TableConfig, version: Version) -> dict[str, Any]:
    """The ``_source`` of an item: its attributes minus excluded ones, plus ``_syncer``."""
    body = dict(item)
    for name in table.exclude_attributes:  # usually none or a few: cheaper than filtering all
        body.pop(name, None)
    if SYNCER_FIELD in body:
        raise PoisonRecordError(
            f"item has an attribute named {SYNCER_FIELD!r}, which syncer reserves; add it to "
            f"exclude_attributes of table {table.name!r}"
        )
    body[SYNCER_FIELD] = _syncer_meta(table, version, deleted=False)
    return body


def tombstone_body(table: TableConfig, version: Version, ttl: bool = False) -> dict[str, Any]:
    """A deleted item's document: only ``_syncer``, so no older change can resurrect it."""
    meta = _syncer_meta(table, version, deleted=True)
    meta["ttl"] = ttl
    return {SYNCER_FIELD: meta}


def _syncer_meta(table: TableConfig, version: Version, deleted: bool) -> dict[str, Any]:
    return {"table": table.name, "deleted": deleted, **version.to_meta()}


def change_state(change: KeyChange, current_item: Image | object | None = _MISSING) -> Image | None:
    """The item as the change leaves it: its new image, or the item read; None when gone.

    ``current_item`` is the item read from the table for streams without a new image
    (KEYS_ONLY, OLD_IMAGE); None there means the item is gone.
    """
    latest = change.latest
    if latest.is_remove:
        return None
    if latest.new_image is not None:
        return latest.new_image
    if current_item is _MISSING:
        raise ValueError(f"change of {change.document_id!r} needs the item read from the table")
    return current_item  # type: ignore[return-value]
