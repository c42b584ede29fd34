"""Cache key templates: plain placeholders, Redis Cluster hash tags, and what is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from syncer.config import parse_config
from syncer.config.templates import check_template, render_cache_key, template_fields
from syncer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ITEM = {"tenant": "acme", "pk": "1", "sk": "v1", "category": "shoes"}


def _slot(key: str) -> int:
    return int(key_slot(key.encode("utf-8")))


def test_an_attributes_hash_tag_renders_its_value_in_braces() -> None:
    """``{tag:tenant}`` renders the tenant's value inside braces, a Redis hash tag."""
    # given a template whose hash tag is the tenant attribute
    # when it is rendered for an item
    key = render_cache_key("{tag:tenant}:product:{pk}", ITEM)
    # then the value is the key's hash tag
    assert key == "{acme}:product:1"


def test_a_literal_hash_tag_renders_its_text_in_braces() -> None:
    """``{tag:'catalog'}`` renders ``{catalog}``: a hash tag that is the same for every item."""
    # given a template with a literal hash tag
    # when it is rendered
    key = render_cache_key("{tag:'catalog'}:category:{category}", ITEM)
    # then the literal is the key's hash tag
    assert key == "{catalog}:category:shoes"


@pytest.mark.parametrize(
    ("template", "tag"),
    [("{tag:tenant}:product:{pk}:{sk}", "acme"), ("{tag:'catalog'}:product:{pk}", "catalog")],
)
def test_keys_of_one_hash_tag_land_in_one_slot(template: str, tag: str) -> None:
    """Every key rendered with one tag is in the slot of the tag (CRC16 of the text in braces)."""
    # given many items of one tenant
    items: list[dict[str, Any]] = [{**ITEM, "pk": f"p{n}", "sk": f"s{n}"} for n in range(200)]
    # when their keys are rendered
    keys = {render_cache_key(template, item) for item in items}
    # then they are all different, and all in the tag's slot
    assert len(keys) == 200
    assert {_slot(key) for key in keys if key} == {_slot(tag)}


def test_keys_without_a_hash_tag_spread_over_slots() -> None:
    """Without a tag the whole key is hashed: the same keys fall into many slots."""
    keys = [render_cache_key("{tenant}:product:{pk}", {**ITEM, "pk": f"p{n}"}) for n in range(200)]
    assert len({_slot(key) for key in keys if key}) > 100


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("product:{pk}", "product:1"),
        ("p:{pk}:{sk}", "p:1:v1"),
        ("{tenant}:product:{pk}", "acme:product:1"),
        ("{{literal}}:{pk}", "{literal}:1"),
        ("{{{tenant}}}:product:{pk}", "{acme}:product:1"),
        ("plain", "plain"),
    ],
)
def test_plain_placeholders_and_doubled_braces_render_as_before(template: str, key: str) -> None:
    """Existing templates keep their meaning: ``{attr}`` is the value, ``{{``/``}}`` braces."""
    assert render_cache_key(template, ITEM) == key


def test_a_hash_tag_attribute_is_a_field_of_the_template() -> None:
    """The attribute of a hash tag is read like any placeholder's (previous states, exclusions)."""
    assert template_fields("{tag:tenant}:product:{pk}") == frozenset({"tenant", "pk"})
    assert template_fields("{tag:'catalog'}:product:{pk}") == frozenset({"pk"})


def test_a_hash_tag_on_an_excluded_attribute_is_refused() -> None:
    """A hash tag's attribute may not be excluded either: its old value must be readable."""
    raw = {
        "tables": [
            {
                "name": "catalog",
                "index": "catalog",
                "cache_keys": ["{tag:tenant}:product:{pk}"],
                "exclude_attributes": ["tenant"],
            }
        ]
    }
    with pytest.raises(ConfigError, match="'tenant'"):
        parse_config(raw, environ={})


@pytest.mark.parametrize(
    "template",
    [
        "{tag:tenant}:product:{pk}",
        "{tag:'catalog'}:category:{category}",
        "{tag:'tenant-1'}:p:{pk}",
        "product:{pk}:{tag:tenant}",
        "{tag}:{pk}",  # an attribute named tag
    ],
)
def test_hash_tag_templates_are_accepted(template: str) -> None:
    """Both hash-tag forms pass the check; ``{tag}`` alone is still an attribute named tag."""
    check_template("tables[0].cache_keys", template)


@pytest.mark.parametrize(
    "template",
    [
        "{'catalog'}:product:{pk}",
        '{"catalog"}:product:{pk}',
        "{ catalog }:product:{pk}",
        "{tag:''}:product:{pk}",
        "{tag:}:product:{pk}",
        "{tag:'cat'alog'}:product:{pk}",
        "{tag:a.b}:product:{pk}",
        "{tag:{pk}}:product",
        "{tag:tenant}:{tag:'x'}:{pk}",
        "{{x}}:{tag:tenant}:{pk}",
        "{catalog:tag}:product:{pk}",
        "{}:product",
        "product:{pk!r}",
        "product:{pk",
    ],
)
def test_a_part_that_names_no_attribute_is_refused_showing_the_hash_tag_syntax(
    template: str,
) -> None:
    """A part that cannot be an attribute (quotes, bad tags, two tags, ...) is refused at start,
    and the message shows how a hash tag is written."""
    # given a configuration with the template
    raw = {"tables": [{"name": "catalog", "index": "catalog", "cache_keys": [template]}]}
    # when it is parsed
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, environ={})
    # then the key and the template are named, and the hash-tag syntax is shown
    message = str(refused.value)
    assert message.startswith("tables[0].cache_keys")
    assert repr(template) in message
    assert "{tag:attribute}" in message
    assert "{tag:'text'}" in message


# -- the examples of docs/configuration.md ---------------------------------------------------

_EXAMPLE_ROW = re.compile(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|$", re.MULTILINE)


def _documented_examples() -> list[tuple[str, dict[str, Any], str]]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text[text.index("### Hash tags") :]
    section = section[: section.index("\n## ")]
    return [(t, json.loads(item), key) for t, item, key in _EXAMPLE_ROW.findall(section)]


def test_the_documented_hash_tag_examples_render_as_documented() -> None:
    """Each row of the Hash tags table in docs/configuration.md renders to the key it shows,
    and a key with a tag is in the slot of its tag."""
    # given the documented examples
    examples = _documented_examples()
    assert len(examples) >= 3
    for template, item, documented in examples:
        # when each template passes the check and is rendered for its item
        check_template("docs", template)
        key = render_cache_key(template, item)
        # then it is the documented key, hashed by its tag when it has one
        assert key == documented
        tag = re.match(r"[^{]*\{([^}]+)\}", key)
        if tag is not None:
            assert _slot(key) == _slot(tag.group(1))
