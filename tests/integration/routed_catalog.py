"""The routed single-table catalog of issue 14: its config, transform and expected index states.

Products, reviews and categories share one table. Reviews are told apart by a ``type``
attribute, products and categories by their sort key prefix; items no route selects are
skipped (the table names no index of its own). Products pass through ``product_document``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncer import handler
from syncer.config import TableConfig, load_config
from syncer.core import jsoncodec
from syncer.core.documents import SYNCER_FIELD
from syncer.core.plan import document_body
from syncer.core.records import document_id
from syncer.core.routes import document_in, route_item, select_route
from syncer.core.versions import Version
from syncer.demo import create_catalog_table
from syncer.runner.streams import table_stream_arn
from syncer.sinks.build import aws_client, build_sinks
from syncer.sinks.indices import apply_setup, plan_setup
from tests.integration.conftest import OPENSEARCH_URL, REDIS_URL, Stack

TRANSFORM = "tests.integration.routed_catalog:product_document"
_ids = itertools.count(1)


def product_document(item: dict[str, Any]) -> dict[str, Any] | None:
    """A product's search document: a lower-case name to search on; hidden products stay out."""
    if "poison" in item:
        raise ValueError(f"cannot shape {item['pk']}: it carries a poison attribute")
    if item.get("hidden") is True:
        return None
    return {**item, "kind": "product", "search_name": str(item.get("name", "")).lower()}


def routes_toml(prefix: str) -> str:
    """The table's three routes; each index is named after ``prefix``."""
    return (
        "[[tables.routes]]\n"
        'match = { attribute = "type", equals = "review" }\n'
        f'index = "{prefix}-reviews"\n'
        'cache_keys = ["review:{pk}:{sk}"]\n\n'
        "[[tables.routes]]\n"
        'match = { attribute = "sk", begins_with = "PRODUCT#" }\n'
        f'index = "{prefix}-products"\n'
        'cache_keys = ["product:{pk}", "category:{category}"]\n'
        'exclude_attributes = ["cost"]\n'
        f'transform = "{TRANSFORM}"\n\n'
        "[[tables.routes]]\n"
        'match = { attribute = "sk", begins_with = "CATEGORY#" }\n'
        f'index = "{prefix}-categories"\n'
        'cache_keys = ["categorypage:{pk}"]\n'
    )


FAST_RESILIENCE = (
    "[resilience]\nmax_attempts = 3\ninitial_backoff_s = 0.01\nmax_backoff_s = 0.05\n"
    "max_retry_time_s = 2.0\nbreaker_fail_max = 50\nbreaker_reset_timeout_s = 1.0\n"
)


def write_routed_config(path: Path, table: str, prefix: str, **sections: str) -> Path:
    """A syncer.toml for the routed catalog; ``sections`` replace whole sections as TOML text."""
    texts = {
        "opensearch": f'[opensearch]\nurl = "{OPENSEARCH_URL}"\n',
        "redis": f'[redis]\nurl = "{REDIS_URL}"\n',
        "deadletter": f'[deadletter]\nfile = "{path.parent / "deadletter.jsonl"}"\n',
        "resilience": FAST_RESILIENCE,
    }
    texts.update(sections)
    table_text = f'[[tables]]\nname = "{table}"\n\n' + routes_toml(prefix)
    path.write_text("\n".join([*texts.values(), table_text]))
    return path


@dataclass
class RoutedCatalog:
    """A routed stack: the table, its three indices, and what each should hold."""

    stack: Stack
    prefix: str

    @property
    def table_config(self) -> TableConfig:
        return self.stack.config.tables[0]

    @property
    def aliases(self) -> dict[str, str]:
        return {name: f"{self.prefix}-{name}" for name in ("products", "reviews", "categories")}

    def indexed(self, name: str) -> dict[str, dict[str, Any]]:
        """Live documents of one route's alias, by id, without ``_syncer``."""
        client = self.stack.sinks.opensearch
        alias = self.aliases[name]
        client.indices.refresh(index=alias)
        response = client.search(index=alias, body={"query": {"match_all": {}}, "size": 10000})
        return {
            hit["_id"]: {k: v for k, v in hit["_source"].items() if k != SYNCER_FIELD}
            for hit in response["hits"]["hits"]
        }

    def items(self) -> list[dict[str, Any]]:
        from syncer.core.attributes import decode_item

        paginator = self.stack.dynamodb.get_paginator("scan")
        return [
            decode_item(raw)
            for page in paginator.paginate(TableName=self.stack.table, ConsistentRead=True)
            for raw in page["Items"]
        ]

    def expected(self, name: str) -> dict[str, dict[str, Any]]:
        """What one route's alias must hold for the table as it is now."""
        table = self.table_config
        alias = self.aliases[name]
        documents: dict[str, dict[str, Any]] = {}
        for item in self.items():
            state = route_item(table, item)
            if state.route is None or state.route.index != alias:
                continue
            document = document_in(state, state.route)
            if document is None:
                continue
            body = document_body(document, table.route_table(state.route), Version())
            body.pop(SYNCER_FIELD)
            doc_id = document_id({"pk": item["pk"], "sk": item["sk"]})
            documents[doc_id] = json.loads(jsoncodec.dumps(body))
        return documents

    def assert_converged(self) -> None:
        for name in self.aliases:
            assert self.indexed(name) == self.expected(name), name


def routed_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view_type: str
) -> Iterator[RoutedCatalog]:
    """A fresh routed catalog table with a stream, every route's index, lambda_handler wired."""
    suffix = f"{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:6]}"
    table = f"single-{suffix}"
    prefix = f"rt-{suffix}"
    config_path = write_routed_config(tmp_path / "syncer.toml", table, prefix)
    monkeypatch.setenv("SYNCER_CONFIG", str(config_path))
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    handler.reset_container()
    config = load_config(str(config_path))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    create_catalog_table(dynamodb, table, view_type)
    for table_config in config.tables:
        for route in table_config.resolved_routes:
            view = table_config.route_table(route)
            apply_setup(sinks.opensearch, view, plan_setup(sinks.opensearch, view))
    _, stream_arn = table_stream_arn(dynamodb, table)
    stack = Stack(
        config_path,
        config,
        sinks,
        dynamodb,
        aws_client("dynamodbstreams"),
        table,
        f"{prefix}-products",
        stream_arn,
    )
    yield RoutedCatalog(stack, prefix)
    handler.reset_container()
    dynamodb.delete_table(TableName=table)
    for name in ("products", "reviews", "categories"):
        sinks.opensearch.indices.delete(index=f"{prefix}-{name}-*")
        sinks.opensearch.indices.delete_index_template(name=f"syncer-{prefix}-{name}")


# -- items of the catalog ----------------------------------------------------------------------


def product(pid: str, category: str = "shoes", **extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "pk": {"S": f"PRODUCT#{pid}"},
        "sk": {"S": f"PRODUCT#{pid}"},
        "type": {"S": "product"},
        "name": {"S": f"Trail Shoe {pid}"},
        "category": {"S": category},
        "price": {"N": "59.90"},
        "cost": {"N": "21"},
        **extra,
    }


def review(pid: str, number: int, stars: int = 5) -> dict[str, Any]:
    return {
        "pk": {"S": f"PRODUCT#{pid}"},
        "sk": {"S": f"REVIEW#{number}"},
        "type": {"S": "review"},
        "stars": {"N": str(stars)},
        "text": {"S": "fits well"},
    }


def category(name: str) -> dict[str, Any]:
    return {
        "pk": {"S": f"CATEGORY#{name}"},
        "sk": {"S": f"CATEGORY#{name}"},
        "type": {"S": "category"},
        "title": {"S": name.title()},
    }


# -- random histories over the routed catalog (delivery simulator, faults) ---------------------


@dataclass
class RoutedHistoryMaker:
    """Random puts, updates and deletes of a few keys whose type changes, so items change route.

    Even keys have a ``PRODUCT#`` sort key (product, or review by type), odd ones a ``NOTE#``
    one (review by type, else no route). Some products are hidden (the transform keeps them
    out of the index).
    """

    rng: random.Random
    prefix: str
    key_count: int = 8

    @property
    def categories(self) -> list[str]:
        return [f"{self.prefix}-{name}" for name in ("shoes", "hats", "bags")]

    def operation(self, dynamodb: Any, table: str) -> None:
        n = self.rng.randrange(self.key_count)
        key = {
            "pk": {"S": f"{self.prefix}-k{n}"},
            "sk": {"S": "PRODUCT#1" if n % 2 == 0 else "NOTE#1"},
        }
        roll = self.rng.random()
        kind = self.rng.choice(["product", "product", "review"])
        if roll < 0.5:
            item = {
                **key,
                "type": {"S": kind},
                "name": {"S": self.rng.choice(["Boot", "Cap", "Tote"])},
                "category": {"S": self.rng.choice(self.categories)},
                "price": {"N": f"{self.rng.randint(1, 500)}.{self.rng.randint(0, 99):02d}"},
                "cost": {"N": "1"},
            }
            if self.rng.random() < 0.15:
                item["hidden"] = {"BOOL": True}
            dynamodb.put_item(TableName=table, Item=item)
        elif roll < 0.8:
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET category = :c, price = :p, #t = :t",
                ExpressionAttributeNames={"#t": "type"},
                ExpressionAttributeValues={
                    ":c": {"S": self.rng.choice(self.categories)},
                    ":p": {"N": str(self.rng.randint(1, 99))},
                    ":t": {"S": kind},
                },
            )
        else:
            dynamodb.delete_item(TableName=table, Key=key)


@dataclass
class RoutedCacheReader:
    """An application filling each route's cache keys from the table, between changes.

    A key's value is every item whose route renders that key; after delivery every key still
    present must equal what the final table gives, or an invalidation was missed.
    """

    redis: Any
    prefix: str
    table: TableConfig

    def _expected(self, items: list[dict[str, Any]]) -> dict[str, str]:
        members: dict[str, list[str]] = {}
        for item in items:
            route = select_route(self.table, item)
            if route is None:
                continue
            value = jsoncodec.dumps(item).decode()
            for template in route.cache_keys:
                from syncer.config.templates import render_cache_key

                key = render_cache_key(template, item)
                if key is not None:
                    members.setdefault(key, []).append(value)
        return {key: json.dumps(sorted(values)) for key, values in members.items()}

    def fill(self, items: list[dict[str, Any]]) -> None:
        expected = self._expected(items)
        if expected:
            self.redis.mset(expected)

    def stale_keys(self, final_items: list[dict[str, Any]]) -> list[str]:
        expected = self._expected(final_items)
        stale = []
        for key in self.redis.scan_iter(match=f"*:{self.prefix}-*"):
            name = key.decode()
            if self.redis.get(key).decode() != expected.get(name):
                stale.append(name)
        return sorted(stale)
