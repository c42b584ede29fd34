"""Cache key templates such as ``product:{pk}``: the one parser, checker and renderer."""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from syncer.errors import ConfigError

Template = tuple[tuple[str, str | None], ...]  # (literal text, attribute name or None)
NO_ATTRIBUTES: Mapping[str, Any] = {}


def check_template(key: str, template: str) -> None:
    """Refuse a cache key template the renderer cannot fill: only ``{attribute}`` is supported."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(f"{key} has a bad template {template!r}: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        problem = None
        if name == "" or name.isdigit():
            problem = "needs named placeholders such as {pk}, not '{}' or '{0}'"
        elif "[" in name or "." in name:
            problem = f"uses indexing or attribute access in {{{name}}}; name the attribute only"
        elif conversion is not None or spec:
            problem = "uses a conversion (!r) or format spec (:...), which are not supported"
        if problem is not None:
            raise ConfigError(f"{key} template {template!r} {problem}")


@functools.lru_cache(maxsize=256)  # templates are few: each is split once
def parse_template(template: str) -> Template:
    """A cache key template split into literals and attribute names."""
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))


@functools.lru_cache(maxsize=256)
def parse_templates(templates: tuple[str, ...]) -> tuple[Template, ...]:
    """All of a table's templates, parsed (keyed by the tuple of templates)."""
    return tuple(parse_template(template) for template in templates)


def template_fields(template: str) -> frozenset[str]:
    """The attribute names a template refers to."""
    return frozenset(name for _, name in parse_template(template) if name)


def _render(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal | float):
        return str(value)
    return None


def fill_template(
    parsed: Template, first: Mapping[str, Any], then: Mapping[str, Any]
) -> str | None:
    """Render with the attributes of ``{**then, **first}``, without building that dict.

    None when a placeholder's attribute is absent or not a scalar.
    """
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
    return fill_template(parse_template(template), NO_ATTRIBUTES, attributes)
