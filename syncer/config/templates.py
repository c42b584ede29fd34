"""Cache key templates such as ``product:{pk}``: the one parser, checker and renderer.

``{attribute}`` is replaced by the attribute's value. For Redis Cluster hash tags (keys that
share the text inside their first ``{...}`` share a hash slot), ``{tag:attribute}`` renders the
value inside braces and ``{tag:'text'}`` renders ``{text}``: ``{tag:tenant}:product:{pk}`` gives
``{acme}:product:1``. ``{{`` and ``}}`` stay literal braces.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from syncer.errors import ConfigError

# (literal text, attribute name or None): a hash tag of an attribute is the part's literal
# ending in "{" and the next part's beginning with "}", so rendering knows no tags at all.
Template = tuple[tuple[str, str | None], ...]
NO_ATTRIBUTES: Mapping[str, Any] = {}

TAG = "tag"  # {tag:attribute} and {tag:'text'}
_LITERAL_TAG = re.compile(r"'([^'{}]+)'")
# "{tag:}" parses exactly as "{tag}" (an attribute named tag): only the text tells them apart.
_EMPTY_TAG = re.compile(r"(?<!\{)(?:\{\{)*\{tag:\}")
HASH_TAG_SYNTAX = (
    "for a Redis Cluster hash tag write {tag:attribute} (the attribute's value in braces) or "
    "{tag:'text'} (literal text in braces), e.g. \"{tag:tenant}:product:{pk}\""
)


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an attribute placeholder, or None."""
    if name == "" or name.isdigit():
        return "needs named placeholders such as {pk}, not '{}' or '{0}'"
    if "[" in name or "." in name:
        return f"uses indexing or attribute access in {{{name}}}; name the attribute only"
    if any(c in name for c in "'\"{}") or name != name.strip():
        return f"has {{{name}}}, which names no attribute (quotes, braces or surrounding spaces)"
    return None


def _part_problem(name: str, spec: str, conversion: str | None) -> str | None:
    """Why the placeholder ``{name!conversion:spec}`` cannot be rendered, or None."""
    if conversion is not None:
        return "uses a conversion (!r), which is not supported"
    if not spec:
        return _name_problem(name)
    if name != TAG:
        return f"uses a format spec ({{{name}:{spec}}}), which is not supported"
    if spec.startswith("'"):
        if _LITERAL_TAG.fullmatch(spec) is None:
            return f"has a bad literal hash tag {{tag:{spec}}}: non-empty text in single quotes"
        return None
    problem = _name_problem(spec)
    return None if problem is None else f"has a bad hash tag {{tag:{spec}}}: it {problem}"


def check_template(key: str, template: str) -> None:
    """Refuse a cache key template the renderer cannot fill, showing the supported syntax."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(
            f"{key} has a bad template {template!r}: {error} (literal braces are {{{{ and }}}}; "
            f"{HASH_TAG_SYNTAX})"
        ) from None
    if _EMPTY_TAG.search(template):
        raise ConfigError(
            f"{key} template {template!r} has an empty hash tag {{tag:}}; {HASH_TAG_SYNTAX}"
        )
    tags = 0
    literal_before_tag = ""
    for literal, name, spec, conversion in parsed:
        if tags == 0:
            literal_before_tag += literal
        if name is None:
            continue
        problem = _part_problem(name, spec or "", conversion)
        if problem is None and name == TAG and spec:
            tags += 1
            if tags > 1:
                problem = "has two hash tags; Redis hashes only the first {...} of a key"
            elif "{" in literal_before_tag:
                problem = (
                    "has literal braces ({{) before its hash tag, which Redis would take as the tag"
                )
        if problem is not None:
            raise ConfigError(f"{key} template {template!r} {problem}; {HASH_TAG_SYNTAX}")


@functools.lru_cache(maxsize=256)  # templates are few: each is split once
def parse_template(template: str) -> Template:
    """A cache key template split into literals and attribute names (hash tags as braces)."""
    parts: list[tuple[str, str | None]] = []
    pending = ""  # literal text carried into the next part
    for literal, name, spec, _ in string.Formatter().parse(template):
        text = pending + literal
        pending = ""
        if name is None:
            pending = text
        elif name == TAG and spec:
            quoted = _LITERAL_TAG.fullmatch(spec)
            if quoted is not None:
                pending = text + "{" + quoted.group(1) + "}"
            else:
                parts.append((text + "{", spec))
                pending = "}"
        else:
            parts.append((text, name))
    if pending or not parts:
        parts.append((pending, None))
    return tuple(parts)


@functools.lru_cache(maxsize=256)
def parse_templates(templates: tuple[str, ...]) -> tuple[Template, ...]:
    """All of a table's templates, parsed (keyed by the tuple of templates)."""
    return tuple(parse_template(template) for template in templates)


def template_fields(template: str) -> frozenset[str]:
    """The attribute names a template refers to (hash tags' included)."""
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
