"""Route an item of a single-table design to its index, and shape its document there (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from syncer.config import Route, RouteMatch, TableConfig, import_transform
from syncer.errors import PoisonRecordError


@dataclass(frozen=True, slots=True)
class Routed:
    """Where one state of an item belongs and what it holds there.

    ``route`` is None when no route selects the item (or it is gone); ``document`` is None
    when the item must not be in ``route``'s index (gone, or the transform kept it out);
    ``error`` says why the transform could not shape it (the record is dead-lettered).
    """

    route: Route | None
    document: Mapping[str, Any] | None
    error: str | None = None


GONE = Routed(None, None)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    return None


def matches(match: RouteMatch, item: Mapping[str, Any]) -> bool:
    """Whether an item's attribute equals (or begins with) the match's value; absent: no."""
    value = _text(item.get(match.attribute))
    if value is None:
        return False
    if match.operator == "equals":
        return value == match.value
    return value.startswith(match.value)


def select_route(table: TableConfig, item: Mapping[str, Any]) -> Route | None:
    """The first route (in configured order, the table's own index last) selecting ``item``."""
    for route in table.resolved_routes:
        if route.match is None or matches(route.match, item):
            return route
    return None


def plain_copy(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a plain item whose maps and lists are new too; other values are immutable.

    Plain items hold only dicts, lists, str, int, Decimal, bool and None (syncer.core.attributes),
    so this is ``copy.deepcopy`` without its memo and dispatch: 5.8 us instead of 13.5 us for
    an item of 27 attributes with nested maps and lists (best of 7 runs here).
    """
    return {
        name: value if type(value) in _IMMUTABLE else _plain_copy_value(value)
        for name, value in item.items()
    }


_IMMUTABLE = frozenset({str, int, Decimal, bool, type(None), float})


def _plain_copy_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {name: _plain_copy_value(inner) for name, inner in value.items()}
    if isinstance(value, list):
        return [_plain_copy_value(inner) for inner in value]
    return value


def route_item(table: TableConfig, item: Mapping[str, Any] | None) -> Routed:
    """The route of an item state and its document there, the transform applied.

    The transform gets a deep copy of the plain item (nested maps and lists too), so whatever it
    does to its argument cannot reach the cache keys, the other routes or a later call. An
    exception or a result that is not a dict is an error of this item alone.
    """
    if item is None:
        return GONE
    route = select_route(table, item)
    if route is None:
        return GONE
    if route.transform is None:
        return Routed(route, item)
    try:
        document = import_transform(route.transform)(plain_copy(item))
    except Exception as error:  # noqa: BLE001 - any failure of user code is this item's error
        return Routed(
            route, None, f"transform {route.transform} failed: {type(error).__name__}: {error}"
        )
    if document is None:
        return Routed(route, None)
    if not isinstance(document, dict):
        return Routed(
            route,
            None,
            f"transform {route.transform} returned {type(document).__name__}, not a JSON object (dict)",
        )
    return Routed(route, document)


def document_in(state: Routed, route: Route) -> Mapping[str, Any] | None:
    """What a routed state puts in ``route``'s index: its document there, or None (a tombstone).

    A transform that failed on the state fails here, for its own route only: the other
    routes' tombstones still go out, and the record is dead-lettered with the reason.
    """
    if state.route is None or state.route.index != route.index:
        return None
    if state.error is not None:
        raise PoisonRecordError(state.error)
    return state.document


def routing_table(table: TableConfig) -> list[str]:
    """One line per route in the order they are tried: what it selects and where it goes."""
    lines = []
    for position, route in enumerate(table.resolved_routes, start=1):
        if route.match is None:
            selects = "every other item"
        else:
            match = route.match
            selects = f"{match.attribute} {match.operator.replace('_', ' ')} {match.value!r}"
        details = [f"cache keys {', '.join(route.cache_keys)}" if route.cache_keys else ""]
        if route.exclude_attributes:
            details.append(f"excluded {', '.join(sorted(route.exclude_attributes))}")
        if route.transform:
            details.append(f"transform {route.transform}")
        extra = "; ".join(d for d in details if d)
        lines.append(f"{position}. {selects} -> {route.index}" + (f" ({extra})" if extra else ""))
    if table.index == "":
        lines.append(f"{len(lines) + 1}. every other item -> skipped (counted as unrouted)")
    return lines
