"""The README's demo: a routed single-table catalog in the emulator, its stream, search and cache."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from syncer.config import Config, Route, RouteMatch, TableConfig, aws_endpoint_overridden
from syncer.errors import ConfigError

DEMO_TABLE = "syncer-demo"


def create_catalog_table(
    dynamodb: Any,
    name: str,
    view_type: str | None = "NEW_AND_OLD_IMAGES",
    key_types: tuple[str, str] = ("S", "S"),
) -> None:
    """A pk/sk table, recreated when it exists (the demo's and the tests' shape).

    It has a stream of ``view_type``, or none when ``view_type`` is None; ``key_types`` are the
    DynamoDB types (S, N or B) of pk and sk.
    """
    if name in dynamodb.list_tables().get("TableNames", []):
        dynamodb.delete_table(TableName=name)
        dynamodb.get_waiter("table_not_exists").wait(TableName=name)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": key_types[0]},
            {"AttributeName": "sk", "AttributeType": key_types[1]},
        ],
        BillingMode="PAY_PER_REQUEST",
        **(
            {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": view_type}}
            if view_type
            else {}
        ),
    )


def product_document(item: dict[str, Any]) -> dict[str, Any] | None:
    """The demo's transform: a product's search document, or None for a hidden product.

    Pure and fast, as a transform must be: it runs for every change of every product.
    """
    if item.get("hidden") is True:
        return None
    return {
        "name": item.get("name"),
        "category": item.get("category"),
        "price": item.get("price"),
        "tags": item.get("tags", []),
        "suggest": str(item.get("name", "")).lower(),
    }


PRODUCT_TRANSFORM = "syncer.demo:product_document"


def demo_table() -> TableConfig:
    """The demo's single-table catalog: reviews by type, products and categories by key prefix."""
    return TableConfig(
        name=DEMO_TABLE,
        index="",  # items no route selects (orders) are skipped and counted
        routes=(
            Route(
                f"{DEMO_TABLE}-reviews",
                RouteMatch("type", "equals", "review"),
                ("reviews:{pk}",),
            ),
            Route(
                f"{DEMO_TABLE}-products",
                RouteMatch("sk", "begins_with", "PRODUCT#"),
                ("product:{pk}", "category:{category}"),
                frozenset({"cost"}),
                PRODUCT_TRANSFORM,
            ),
            Route(
                f"{DEMO_TABLE}-categories",
                RouteMatch("sk", "begins_with", "CATEGORY#"),
                ("category-page:{pk}",),
            ),
        ),
    )


def _product(number: int) -> dict[str, Any]:
    key = f"PRODUCT#sku-{number:04d}"
    return {
        "pk": {"S": key},
        "sk": {"S": key},
        "type": {"S": "product"},
        "name": {"S": f"Demo product {number}"},
        "category": {"S": ["shoes", "hats", "bags"][number % 3]},
        "price": {"N": str(Decimal(number) + Decimal("0.99"))},
        "tags": {"SS": ["demo", f"batch-{number % 2}"]},
        "cost": {"N": "1.25"},
    }


def _review(number: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"PRODUCT#sku-{number:04d}"},
        "sk": {"S": "REVIEW#1"},
        "type": {"S": "review"},
        "stars": {"N": str(1 + number % 5)},
        "text": {"S": "Fits well."},
    }


def _category(name: str) -> dict[str, Any]:
    key = f"CATEGORY#{name}"
    return {"pk": {"S": key}, "sk": {"S": key}, "type": {"S": "category"}, "title": {"S": name}}


def run_demo(config: Config, item_count: int, echo: Callable[[str], None]) -> None:
    """Write, move, hide and delete catalog items; follow the stream; print search and cache."""
    from syncer.core.outcome import BatchOutcome
    from syncer.core.records import document_id
    from syncer.core.routes import routing_table
    from syncer.runner.poller import PollOptions, StreamPoller
    from syncer.sinks.build import aws_client, build_sinks
    from syncer.sinks.checkpoints import FileCheckpointStore
    from syncer.sinks.indices import apply_setup, plan_setup

    if not aws_endpoint_overridden():
        raise ConfigError(
            "the demo runs against the local emulator: set AWS_ENDPOINT_URL (see README)"
        )
    # The demo owns its table and indices, so it never touches a configured one.
    table = demo_table()
    config = replace(config, tables=(table,))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    streams = aws_client("dynamodbstreams")

    echo(f"1. creating table {table.name!r} with a NEW_AND_OLD_IMAGES stream in the emulator")
    echo("   routes, first match wins:")
    for line in routing_table(table):
        echo(f"     {line}")
    create_catalog_table(dynamodb, table.name)
    for route in table.resolved_routes:
        view = table.route_table(route)
        # A new table's stream numbers restart, so the last run's documents would look newer.
        sinks.opensearch.indices.delete(index=f"{view.index}-*", ignore_unavailable=True)
        for step in plan_setup(sinks.opensearch, view):
            echo(f"   setup: {step.action} {step.target}")
            apply_setup(sinks.opensearch, view, [step])

    echo(
        f"2. writing {item_count} products, a review of every third, 4 categories and an order; "
        "moving sku-0001 to 'sale', hiding sku-0003, deleting sku-0002, "
        "turning the review of sku-0006 into a question"
    )
    for number in range(item_count):
        dynamodb.put_item(TableName=table.name, Item=_product(number))
        sinks.redis.set(f"product:PRODUCT#sku-{number:04d}", "cached-json")
        if number % 3 == 0:
            dynamodb.put_item(TableName=table.name, Item=_review(number))
    for name in ("shoes", "hats", "bags", "sale"):
        dynamodb.put_item(TableName=table.name, Item=_category(name))
    order = {"pk": {"S": "ORDER#1"}, "sk": {"S": "ORDER#1"}, "type": {"S": "order"}}
    dynamodb.put_item(TableName=table.name, Item=order)
    sinks.redis.set("category:sale", "cached-list")
    sinks.redis.set("category:unrelated", "cached-list")
    dynamodb.update_item(
        TableName=table.name,
        Key={"pk": {"S": "PRODUCT#sku-0001"}, "sk": {"S": "PRODUCT#sku-0001"}},
        UpdateExpression="SET category = :c",
        ExpressionAttributeValues={":c": {"S": "sale"}},
    )
    dynamodb.update_item(
        TableName=table.name,
        Key={"pk": {"S": "PRODUCT#sku-0003"}, "sk": {"S": "PRODUCT#sku-0003"}},
        UpdateExpression="SET #h = :h",
        ExpressionAttributeNames={"#h": "hidden"},
        ExpressionAttributeValues={":h": {"BOOL": True}},
    )
    dynamodb.delete_item(
        TableName=table.name,
        Key={"pk": {"S": "PRODUCT#sku-0002"}, "sk": {"S": "PRODUCT#sku-0002"}},
    )
    dynamodb.update_item(
        TableName=table.name,
        Key={"pk": {"S": "PRODUCT#sku-0006"}, "sk": {"S": "REVIEW#1"}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":t": {"S": "question"}},
    )

    echo("3. following the stream with the worker of `syncer run --once` (same pipeline as Lambda)")
    invalidated: set[str] = set()

    def show(outcome: BatchOutcome) -> None:
        echo(
            f"   batch of {outcome.records_in} records: {outcome.keys} keys, {outcome.indexed} "
            f"indexed, {outcome.deleted} deleted, {outcome.unrouted} unrouted (skipped), "
            f"{outcome.invalidated} cache keys invalidated; "
            f"Lambda response {outcome.lambda_response()}"
        )
        invalidated.update(outcome.cache_keys)

    with tempfile.TemporaryDirectory() as scratch:
        store = FileCheckpointStore(Path(scratch) / "checkpoints.json")
        poller = StreamPoller(
            config,
            sinks,
            streams,
            dynamodb,
            store,
            PollOptions(once=True, idle_sleep_s=0.2),
            on_batch=show,
        )
        poller.run()

    echo("4. search, one alias per route:")
    for route in table.resolved_routes:
        sinks.opensearch.indices.refresh(index=route.index)
        hits = sinks.opensearch.search(
            index=route.index,
            body={"query": {"match_all": {}}, "size": 3, "sort": [{"_id": "asc"}]},
        )
        total = hits["hits"]["total"]["value"]
        first = ", ".join(hit["_id"] for hit in hits["hits"]["hits"])
        echo(f"   {route.index}: {total} documents, first: {first}")
    sku_1 = "PRODUCT#sku-0001"
    products = sinks.opensearch.search(
        index=f"{DEMO_TABLE}-products",
        body={"query": {"ids": {"values": [document_id({"pk": sku_1, "sk": sku_1})]}}},
    )["hits"]["hits"]
    if products:
        shaped = {k: v for k, v in products[0]["_source"].items() if k != "_syncer"}
        echo(f"   sku-0001 as the transform shaped it: {shaped}")
    echo("   (sku-0002 deleted, sku-0003 hidden by the transform, the order skipped)")
    remaining = [key for key in sorted(invalidated) if sinks.redis.exists(key)]
    echo(
        f"5. cache keys invalidated: {len(invalidated)}, for example {sorted(invalidated)[:4]}; "
        f"still cached of those: {remaining}; untouched: category:unrelated="
        f"{sinks.redis.get('category:unrelated')!r}"
    )
