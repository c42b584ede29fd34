"""Transforms the routing unit tests name in their configurations."""

from __future__ import annotations

from typing import Any


def shout(item: dict[str, Any]) -> dict[str, Any]:
    """The item with an upper-case name."""
    return {**item, "name": str(item.get("name", "")).upper()}


def tag_in_place(item: dict[str, Any]) -> dict[str, Any]:
    """Mutates the nested map and list it was given, then returns the item itself."""
    item.setdefault("details", {})["shouted"] = True
    item.setdefault("tags", []).append("seen")
    return item


def hide(item: dict[str, Any]) -> None:
    """Keeps every item out of its index."""
    return


def explode(item: dict[str, Any]) -> dict[str, Any]:
    """Fails on every item."""
    raise RuntimeError("no shape for this item")


def a_list(item: dict[str, Any]) -> list[Any]:
    """Returns something that is not a JSON object."""
    return [item]


NOT_CALLABLE = 42
