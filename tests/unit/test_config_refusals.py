"""Settings that would break at run time are refused at start, with a message naming the key."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from syncer.config import parse_config
from syncer.errors import ConfigError

BASE = """
[opensearch]
url = "http://127.0.0.1:9200"

[[tables]]
name = "catalog"
index = "catalog"
cache_keys = ["product:{pk}", "category:{category}"]
exclude_attributes = ["cost"]
"""

NAN = float("nan")
INF = float("inf")


def _raw() -> dict[str, Any]:
    return tomllib.loads(BASE)


BAD_NUMBERS = [
    ("opensearch", "timeout_s", NAN),
    ("opensearch", "timeout_s", INF),
    ("opensearch", "timeout_s", -INF),
    ("opensearch", "timeout_s", 0),
    ("opensearch", "timeout_s", -1),
    ("opensearch", "bulk_max_actions", 0),
    ("opensearch", "bulk_max_actions", -3),
    ("opensearch", "bulk_max_bytes", 0),
    ("opensearch", "bulk_max_bytes", -5),
    ("redis", "timeout_s", NAN),
    ("redis", "timeout_s", 0),
    ("redis", "timeout_s", -2.5),
    ("redis", "timeout_s", INF),
    ("resilience", "max_attempts", 0),
    ("resilience", "max_attempts", -1),
    ("resilience", "breaker_fail_max", 0),
    ("resilience", "breaker_fail_max", -4),
    ("resilience", "initial_backoff_s", -0.1),
    ("resilience", "initial_backoff_s", NAN),
    ("resilience", "initial_backoff_s", INF),
    ("resilience", "max_backoff_s", -1),
    ("resilience", "max_backoff_s", NAN),
    ("resilience", "max_backoff_s", INF),
    ("resilience", "max_retry_time_s", 0),
    ("resilience", "max_retry_time_s", NAN),
    ("resilience", "max_retry_time_s", INF),
    ("resilience", "max_retry_time_s", -3),
    ("resilience", "breaker_reset_timeout_s", 0),
    ("resilience", "breaker_reset_timeout_s", NAN),
    ("resilience", "breaker_reset_timeout_s", INF),
    ("resilience", "breaker_reset_timeout_s", -1),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_NUMBERS)
def test_number_setting_out_of_range_is_refused(section: str, key: str, value: float) -> None:
    """A NaN, infinite, zero or negative value where it cannot work is refused by key."""
    # given a config with one number setting out of range
    raw = _raw()
    raw.setdefault(section, {})[key] = value
    # when it is parsed
    # then the message names the key
    with pytest.raises(ConfigError, match=rf"{section}\.{key} "):
        parse_config(raw, environ={})


GOOD_NUMBERS = [
    ("opensearch", "timeout_s", 0.5),
    ("opensearch", "bulk_max_actions", 1),
    ("opensearch", "bulk_max_bytes", 1),
    ("redis", "timeout_s", 2),
    ("resilience", "max_attempts", 1),
    ("resilience", "breaker_fail_max", 1),
    ("resilience", "initial_backoff_s", 0),
    ("resilience", "max_backoff_s", 0),
    ("resilience", "max_retry_time_s", 0.1),
    ("resilience", "breaker_reset_timeout_s", 0.1),
]


@pytest.mark.parametrize(("section", "key", "value"), GOOD_NUMBERS)
def test_smallest_working_number_is_accepted(section: str, key: str, value: float) -> None:
    """The smallest value that works at run time is accepted."""
    # given a config with a number setting at its lower bound
    raw = _raw()
    raw.setdefault(section, {})[key] = value
    # when it is parsed
    config = parse_config(raw, environ={})
    # then the value is kept
    assert getattr(getattr(config, section), key) == value


BAD_INDEX_NAMES = [
    "",
    "_all",
    "-x",
    "+x",
    ".",
    "..",
    "Catalog",
    "catalogÉ",
    "a" * 256,
    "é" * 128,  # 256 bytes in UTF-8
    "cat\nalog",
    "cat alog",
    "cat:alog",
    "cat,alog",
    "cat#alog",
    "cat\\alog",
    "cat/alog",
    "cat*alog",
    "cat?alog",
    'cat"alog',
    "cat<alog",
    "cat>alog",
    "cat|alog",
    "cat\talog",
]


@pytest.mark.parametrize("index", BAD_INDEX_NAMES)
def test_index_name_opensearch_refuses_is_refused(index: str) -> None:
    """An alias name OpenSearch would refuse is refused at start, naming the table's key."""
    # given a table whose index OpenSearch cannot create
    raw = _raw()
    raw["tables"][0]["index"] = index
    # when it is parsed
    # then the message names the key
    with pytest.raises(ConfigError, match=r"tables\[0\]\.index"):
        parse_config(raw, environ={})


@pytest.mark.parametrize("index", ["catalog", "catalog-v2", "a.b_c", "9lives", "a" * 200])
def test_index_name_opensearch_takes_is_accepted(index: str) -> None:
    """Ordinary lowercase alias names pass."""
    # given a plain alias name
    raw = _raw()
    raw["tables"][0]["index"] = index
    # when it is parsed
    # then it is kept
    assert parse_config(raw, environ={}).tables[0].index == index


def test_index_name_leaves_room_for_the_names_syncer_derives() -> None:
    """The alias plus the '-reindexing' suffix must fit OpenSearch's 255 bytes."""
    # given an alias of 250 bytes: fine alone, too long once syncer adds its suffixes
    raw = _raw()
    raw["tables"][0]["index"] = "a" * 250
    # when it is parsed
    # then it is refused with the byte count
    with pytest.raises(ConfigError, match=r"tables\[0\]\.index .*bytes"):
        parse_config(raw, environ={})


BAD_TEMPLATES = [
    "product:{pk[0]}",
    "product:{pk.name}",
    "product:{pk!r}",
    "product:{pk:>5}",
    "product:{}",
    "product:{0}",
    "product:{pk",
    "product:pk}",
    "product:{{pk}",
    "product:{pk}}",
    "{pk}{sk!s}",
]


@pytest.mark.parametrize("template", BAD_TEMPLATES)
def test_cache_key_template_the_renderer_cannot_fill_is_refused(template: str) -> None:
    """Indexing, attribute access, conversions, format specs, unnamed fields, bad braces: refused."""
    # given a template using syntax the renderer does not support
    raw = _raw()
    raw["tables"][0]["cache_keys"] = ["product:{pk}", template]
    # when it is parsed
    # then the message names the key and the template
    with pytest.raises(ConfigError, match=r"tables\[0\]\.cache_keys") as refused:
        parse_config(raw, environ={})
    assert repr(template) in str(refused.value)


@pytest.mark.parametrize("template", ["product:{pk}", "p:{pk}:{sk}", "{{literal}}:{pk}", "plain"])
def test_cache_key_template_with_plain_placeholders_is_accepted(template: str) -> None:
    """Named placeholders and doubled braces are what the renderer supports."""
    # given a supported template
    raw = _raw()
    raw["tables"][0]["cache_keys"] = [template]
    # when it is parsed
    # then it is kept
    assert parse_config(raw, environ={}).tables[0].cache_keys == (template,)


def test_cache_key_on_an_excluded_attribute_is_refused() -> None:
    """A template whose placeholder is an excluded attribute is refused: its old value is unknown."""
    # given a cache key built from 'cost', which exclude_attributes keeps out of the index
    raw = _raw()
    raw["tables"][0]["cache_keys"] = ["product:{pk}", "price:{cost}"]
    # when it is parsed
    # then the message names the table, the template and the attribute, and suggests the fix
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, environ={})
    message = str(refused.value)
    assert "'catalog'" in message
    assert "'price:{cost}'" in message
    assert "'cost'" in message
    assert "exclude_attributes" in message
