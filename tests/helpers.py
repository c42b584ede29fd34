"""Helpers shared by unit and integration tests: the hand-built events and record mutations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent / "events"
# The event files whose every record is valid (the others are built to be refused).
VALID_EVENT_FILES = [
    "insert_modify_remove.json",
    "ttl_remove.json",
    "keys_only.json",
    "new_image.json",
    "old_image.json",
    "all_attribute_types.json",
    "separator_keys.json",
]
# A sequence number syncer can use: 1 to 40 digits (DynamoDB's are 21 to 40).
USABLE_SEQUENCE = re.compile(r"[0-9]{1,40}")

JsonPath = tuple[str | int, ...]  # keys and list positions from a JSON value's root
Mutation = Callable[[dict[str, Any]], None]  # changes a stream record in place


def load_event(name: str) -> dict[str, Any]:
    """``tests/events/<name>`` as JSON."""
    loaded: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return loaded


def valid_records() -> list[dict[str, Any]]:
    """Every record of the valid event files, in file order."""
    return [record for name in VALID_EVENT_FILES for record in load_event(name)["Records"]]


def json_paths(value: object, prefix: JsonPath = ()) -> list[JsonPath]:
    """Every path to a nested value of ``value`` (not the root itself)."""
    found: list[JsonPath] = []
    children: list[tuple[str | int, object]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        found.append((*prefix, key))
        found.extend(json_paths(child, (*prefix, key)))
    return found


def parent_of(record: dict[str, Any], path: JsonPath) -> Any:
    """The dict or list that holds the value at ``path``."""
    node: Any = record
    for step in path[:-1]:
        node = node[step]
    return node


def drop_field(path: JsonPath) -> Mutation:
    """Delete the value at ``path``."""

    def mutate(record: dict[str, Any]) -> None:
        del parent_of(record, path)[path[-1]]

    return mutate


def replace_value(path: JsonPath, value: object) -> Mutation:
    """Put ``value`` at ``path``."""

    def mutate(record: dict[str, Any]) -> None:
        parent_of(record, path)[path[-1]] = value

    return mutate


def swap_tag(path: JsonPath, tag: str) -> Mutation:
    """Give the typed value at ``path`` (``{"S": ...}``) the type tag ``tag``."""

    def mutate(record: dict[str, Any]) -> None:
        parent = parent_of(record, path)
        ((_, inner),) = parent[path[-1]].items()
        parent[path[-1]] = {tag: inner}

    return mutate


def set_body_field(name: str, value: object) -> Mutation:
    """Set ``dynamodb.<name>`` when the record has a ``dynamodb`` object."""

    def mutate(record: dict[str, Any]) -> None:
        if isinstance(record.get("dynamodb"), dict):
            record["dynamodb"][name] = value

    return mutate


def set_field(name: str, value: object) -> Mutation:
    """Set the record's top-level field ``name``."""

    def mutate(record: dict[str, Any]) -> None:
        record[name] = value

    return mutate


_NOT_READ = object()


def plan_key(
    change: Any,
    table: Any,
    target: Any = None,
    current_item: Any = _NOT_READ,
    reread: Any = None,
) -> Any:
    """The production planning path for one key and one index: ``KeyWork`` + ``ChangePlanner``.

    ``target`` is the index's ``TargetState``, or only its document in the table's own index;
    an index no route names is taken as the last route's reindex target. ``current_item`` is
    the item read from the table (streams without a new image), None when it is gone.
    """
    from syncer.config.names import reindex_alias
    from syncer.core.documents import TargetState
    from syncer.core.planners import ChangePlanner
    from syncer.core.work import KeyWork

    if not isinstance(target, TargetState):
        target = TargetState(table.index, target)
    work = KeyWork.start(change, table)
    if current_item is not _NOT_READ:
        work.item, work.item_read = current_item, True
    routes = table.resolved_routes
    alias = target.index
    if alias not in {route.index for route in routes}:
        alias = reindex_alias(routes[-1].index)
    return ChangePlanner([work])((alias, change.document_id), target, reread)


class CollectorWatch:
    """Watches the cycle collector through a batch: ``outcome()`` makes a batch's outcome whose
    life it follows, and each ``gc.enable()`` records whether every such outcome was freed."""

    def __init__(self) -> None:
        import gc

        self._enable = gc.enable
        self._outcomes: list[Callable[[], object]] = []
        self.enabled_with_outcomes_alive: list[bool] = []

    def outcome(self, *fields: Any) -> Any:
        """A ``BatchOutcome`` of ``fields`` that a weak reference can follow."""
        import weakref

        from syncer.core.outcome import BatchOutcome

        class Followed(BatchOutcome):  # no __slots__: a weak reference can point to it
            pass

        made = Followed(*fields)
        self._outcomes.append(weakref.ref(made))
        return made

    def enable(self) -> None:
        """Stands in for ``gc.enable``: records, then turns the collector on."""
        self.enabled_with_outcomes_alive.append(any(ref() is not None for ref in self._outcomes))
        self._enable()
