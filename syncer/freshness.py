"""Read-your-writes for applications: ``syncer.freshness.wait_until_visible`` (docs/consistency.md)."""

from syncer.client.freshness import (
    AttributeEquals,
    Deleted,
    Visibility,
    WrittenAt,
    wait_until_visible,
    wait_until_visible_async,
)

__all__ = [
    "AttributeEquals",
    "Deleted",
    "Visibility",
    "WrittenAt",
    "wait_until_visible",
    "wait_until_visible_async",
]
