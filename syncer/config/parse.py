"""Parsed TOML -> the dataclasses of ``schema``: known keys only, each value of its field's type.

Checks here look at one value at a time; the rules between values are in ``rules``.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from syncer.config.consistency import parse_consistency
from syncer.config.names import check_index_name
from syncer.config.schema import (
    MATCH_OPERATORS,
    CheckpointConfig,
    Config,
    DeadLetterConfig,
    OpenSearchConfig,
    RedisConfig,
    ResilienceConfig,
    Route,
    RouteMatch,
    SecretRef,
    TableConfig,
)
from syncer.config.templates import check_template
from syncer.config.transforms import import_transform
from syncer.errors import ConfigError

S = TypeVar("S")

_SECTIONS = {
    "opensearch",
    "redis",
    "deadletter",
    "resilience",
    "checkpoints",
    "consistency",
    "tables",
}
_TABLE_KEYS = {
    "name",
    "index",
    "cache_keys",
    "search_cache_keys",
    "exclude_attributes",
    "routes",
    "kinesis_stream",
}
_KINESIS_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_ROUTE_KEYS = {
    "match",
    "index",
    "cache_keys",
    "search_cache_keys",
    "exclude_attributes",
    "transform",
}

# Lower bounds of the numeric settings: (key, smallest value, whether it may equal it). Every
# number must also be finite: NaN compares false with everything and slips past any bound.
_NUMBER_BOUNDS: dict[str, tuple[float, bool]] = {
    "opensearch.timeout_s": (0, False),
    "opensearch.bulk_max_actions": (1, True),
    "opensearch.bulk_max_bytes": (1, True),
    "opensearch.known_states": (0, True),
    "redis.timeout_s": (0, False),
    "resilience.max_attempts": (1, True),
    "resilience.initial_backoff_s": (0, True),
    "resilience.max_backoff_s": (0, True),
    "resilience.max_retry_time_s": (0, False),
    "resilience.breaker_fail_max": (1, True),
    "resilience.breaker_reset_timeout_s": (0, False),
}


def parse_sections(raw: Mapping[str, Any]) -> Config:
    """Every section of the (already overridden) TOML as its dataclass."""
    check_keys("top level", raw, _SECTIONS)
    deadletter = _section(DeadLetterConfig, "deadletter", raw.get("deadletter"))
    if deadletter.sqs_queue_url:  # the queue wins over the file
        deadletter = DeadLetterConfig(file=None, sqs_queue_url=deadletter.sqs_queue_url)
    return Config(
        tables=_tables(raw.get("tables")),
        opensearch=_section(OpenSearchConfig, "opensearch", raw.get("opensearch")),
        redis=_section(RedisConfig, "redis", raw.get("redis")),
        deadletter=deadletter,
        resilience=_section(ResilienceConfig, "resilience", raw.get("resilience")),
        checkpoints=_section(CheckpointConfig, "checkpoints", raw.get("checkpoints")),
        consistency=parse_consistency(raw.get("consistency")),
    )


def check_keys(section: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse a key ``section`` does not know, listing the ones it does."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key {section}.{unknown[0]} in the configuration; "
            f"known keys of [{section}]: {', '.join(sorted(allowed))}"
        )


# -- the flat sections: [opensearch], [redis], [deadletter], [resilience], [checkpoints] ------


def _field_types(cls: type[Any]) -> dict[str, Any]:
    """The dataclass's field types, evaluated (its annotations are strings)."""
    return typing.get_type_hints(cls)


def _accepted_types(hint: Any) -> tuple[tuple[type, ...], bool]:
    """(types a value may have, whether it may be absent) from a field's type."""
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    accepted: tuple[type, ...] = ()
    for member in members:
        if member is not type(None):
            accepted += (int, float) if member is float else (member,)  # TOML's 30 for 30.0
    return accepted, type(None) in members


def _section(cls: type[S], name: str, raw: object) -> S:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{name}] must be a table of keys")
    hints = _field_types(cls)
    check_keys(name, raw, set(hints))
    values = dict(raw)
    for key, value in raw.items():
        if hints[key] is SecretRef:
            values[key] = _secret_ref(f"{name}.{key}", value)
            continue
        accepted, optional = _accepted_types(hints[key])
        wrong_bool = isinstance(value, bool) and bool not in accepted
        if wrong_bool or not (isinstance(value, accepted) or (optional and value is None)):
            expected = " or ".join(t.__name__ for t in accepted)
            raise ConfigError(f"{name}.{key} must be a {expected}, got {value!r:.40}")
        _check_number(f"{name}.{key}", value)
    return cls(**values)


def _check_number(key: str, value: object) -> None:
    """Refuse a number that would break at run time: NaN, infinite, or below its bound."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    bound = _NUMBER_BOUNDS.get(key)
    if bound is None:
        return
    smallest, inclusive = bound
    if value < smallest or (value == smallest and not inclusive):
        relation = "at least" if inclusive else "greater than"
        raise ConfigError(f"{key} must be {relation} {smallest:g}, got {value!r}")


def _secret_ref(key: str, raw: object) -> SecretRef:
    """``password = {env = "NAME"}`` (or secrets_manager/ssm_parameter), or a plain string."""
    if isinstance(raw, str):
        return SecretRef(value=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{key} must be a string or a table like {{ env = "NAME" }}')
    allowed = set(_field_types(SecretRef))
    check_keys(key, raw, allowed)
    if len(raw) != 1 or not all(isinstance(v, str) and v for v in raw.values()):
        raise ConfigError(f"{key} needs exactly one of {', '.join(sorted(allowed))}, as a string")
    return SecretRef(**raw)


# -- [[tables]] and their [[tables.routes]] ---------------------------------------------------


def _tables(raw: object) -> tuple[TableConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            "the configuration needs at least one [[tables]] entry with name and index"
        )
    return tuple(_table(f"tables[{position}]", entry) for position, entry in enumerate(raw))


def _table(where: str, raw: object) -> TableConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table of keys")
    check_keys("tables", raw, _TABLE_KEYS)
    routes = _routes(where, raw.get("routes"))
    # A routed table may leave out its own index: items no route selects are then skipped.
    for required in ("name", "index") if not routes or "index" in raw else ("name",):
        if not isinstance(raw.get(required), str) or not raw[required]:
            raise ConfigError(f"{where}.{required} is required and must be a non-empty string")
    index = raw.get("index", "")
    if index:
        check_index_name(f"{where}.index", index)
    return TableConfig(
        name=raw["name"],
        index=index,
        cache_keys=_templates(f"{where}.cache_keys", raw.get("cache_keys", [])),
        exclude_attributes=frozenset(
            _strings(f"{where}.exclude_attributes", raw.get("exclude_attributes", []))
        ),
        search_cache_keys=_templates(
            f"{where}.search_cache_keys", raw.get("search_cache_keys", [])
        ),
        routes=routes,
        kinesis_stream=_kinesis_stream(f"{where}.kinesis_stream", raw.get("kinesis_stream")),
    )


def _kinesis_stream(where: str, raw: object) -> str | None:
    """A Kinesis stream's name (1 to 128 of ``[a-zA-Z0-9_.-]``) or ARN, or None."""
    if raw is None:
        return None
    name = raw.split(":stream/", 1)[-1] if isinstance(raw, str) else ""
    if not isinstance(raw, str) or not _KINESIS_STREAM_NAME.fullmatch(name):
        raise ConfigError(
            f"{where} must be a Kinesis stream name (1 to 128 letters, digits, _ . -) or its "
            f"ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME), got {raw!r:.120}"
        )
    if raw.startswith("arn:") and not raw.split(":")[2:3] == ["kinesis"]:
        raise ConfigError(f"{where} is an ARN but not a Kinesis stream's: {raw!r:.120}")
    return raw


def _routes(where: str, raw: object) -> tuple[Route, ...]:
    """``[[tables.routes]]``: each route's match, index, cache keys, exclusions and transform."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        raise ConfigError(f"{where}.routes must be a list of tables ([[tables.routes]])")
    return tuple(_route(f"{where}.routes[{i}]", r) for i, r in enumerate(raw))


def _route(where: str, raw: Mapping[str, Any]) -> Route:
    check_keys(where, raw, _ROUTE_KEYS)
    index = raw.get("index")
    if not isinstance(index, str) or not index:
        raise ConfigError(f"{where}.index is required and must be a non-empty string")
    check_index_name(f"{where}.index", index)
    if "match" not in raw:
        raise ConfigError(f'{where}.match is required, e.g. {{ attribute = "type", equals = "x" }}')
    cache_keys = _templates(f"{where}.cache_keys", raw.get("cache_keys", []))
    search_cache_keys = _templates(f"{where}.search_cache_keys", raw.get("search_cache_keys", []))
    exclude = _strings(f"{where}.exclude_attributes", raw.get("exclude_attributes", []))
    transform = raw.get("transform")
    if transform is not None:
        if not isinstance(transform, str):
            raise ConfigError(f'{where}.transform must be a string "module:function"')
        try:
            import_transform(transform)
        except ConfigError as error:
            raise ConfigError(f"{where}.transform: {error}") from None
    return Route(
        index=index,
        match=_match(f"{where}.match", raw["match"]),
        cache_keys=cache_keys,
        exclude_attributes=frozenset(exclude),
        transform=transform,
        search_cache_keys=search_cache_keys,
    )


def _match(where: str, raw: object) -> RouteMatch:
    """``{ attribute = "sk", begins_with = "PRODUCT#" }`` or ``{ attribute = "type", equals = ... }``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where} must be a table like {{ attribute = "type", equals = "x" }}')
    unknown = sorted(set(raw) - {"attribute", *MATCH_OPERATORS})
    if unknown:
        raise ConfigError(
            f"unknown match operator {where}.{unknown[0]}; known: {', '.join(MATCH_OPERATORS)}"
        )
    attribute = raw.get("attribute")
    if not isinstance(attribute, str) or not attribute:
        raise ConfigError(f"{where}.attribute is required and must be a non-empty string")
    operators = [name for name in MATCH_OPERATORS if name in raw]
    if len(operators) != 1:
        raise ConfigError(f"{where} needs exactly one of {', '.join(MATCH_OPERATORS)}")
    value = raw[operators[0]]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{operators[0]} must be a string")
    return RouteMatch(attribute, operators[0], value)


def _strings(key: str, values: object) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} must be a list of strings")
    return values


def _templates(key: str, values: object) -> tuple[str, ...]:
    """A list of cache key templates, each one the renderer can fill."""
    templates = _strings(key, values)
    for template in templates:
        check_template(key, template)
    return tuple(templates)
