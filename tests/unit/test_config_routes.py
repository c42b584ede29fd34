"""A routed table's settings are checked as a whole: exclusions, cache keys and derived names."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from syncer.config import parse_config
from syncer.errors import ConfigError

RAW: dict[str, Any] = {
    "tables": [
        {
            "name": "catalog",
            "routes": [
                {
                    "match": {"attribute": "type", "equals": "review"},
                    "index": "reviews",
                    "cache_keys": ["review:{pk}"],
                },
                {
                    "match": {"attribute": "sk", "begins_with": "PRODUCT#"},
                    "index": "products",
                    "cache_keys": ["product:{pk}", "category:{category}"],
                    "exclude_attributes": ["cost"],
                },
            ],
        }
    ]
}
PRODUCT = {"pk": "P1", "sk": "PRODUCT#1", "type": "product", "cost": 3, "secret": "s3"}


def _raw() -> dict[str, Any]:
    return copy.deepcopy(RAW)


def _refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ={})
    return str(caught.value)


# -- B1: a route's cache keys may not use what the route excludes ----------------------------


@pytest.mark.parametrize("key", ["cache_keys", "search_cache_keys"])
def test_route_cache_key_on_an_attribute_the_route_excludes_is_refused(key: str) -> None:
    """A route's template naming an attribute the route excludes is refused, naming the route's
    key: the old value could not be read back from the index to invalidate the old key."""
    # given a route whose template uses its excluded 'cost'
    raw = _raw()
    raw["tables"][0]["routes"][1][key] = ["product:{pk}", "price:{cost}"]
    # when it is parsed
    message = _refused(raw)
    # then the route's key, the template and the attribute are named
    assert message.startswith(f"tables[0].routes[1].{key}:")
    assert "'price:{cost}'" in message
    assert "'cost'" in message
