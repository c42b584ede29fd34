"""The README's demo: write to a table in the emulator, deliver its stream, show search and cache."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from syncer.config import Config, TableConfig, aws_endpoint_overridden
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


def _demo_item(number: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"sku-{number:04d}"},
        "sk": {"S": "v1"},
        "name": {"S": f"Demo product {number}"},
        "category": {"S": ["shoes", "hats", "bags"][number % 3]},
        "price": {"N": str(Decimal(number) + Decimal("0.99"))},
        "tags": {"SS": ["demo", f"batch-{number % 2}"]},
        "cost": {"N": "1.25"},
    }


def run_demo(config: Config, item_count: int, echo: Callable[[str], None]) -> None:
    """Write, move and delete items; deliver the stream to the handler; print the result."""
    from syncer.checkpoints import FileCheckpointStore
    from syncer.indices import apply_setup, plan_setup
    from syncer.pipeline import BatchOutcome
    from syncer.poller import PollOptions, StreamPoller
    from syncer.runtime import aws_client, build_sinks

    if not aws_endpoint_overridden():
        raise ConfigError(
            "the demo runs against the local emulator: set AWS_ENDPOINT_URL (see README)"
        )
    # The demo owns its table and index, so it never touches a configured one.
    table = TableConfig(
        name=DEMO_TABLE,
        index=DEMO_TABLE,
        cache_keys=("product:{pk}", "product:{pk}:{sk}", "category:{category}"),
        exclude_attributes=frozenset({"cost"}),
    )
    config = replace(config, tables=(table,))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    streams = aws_client("dynamodbstreams")

    echo(f"1. creating table {table.name!r} with a NEW_AND_OLD_IMAGES stream in the emulator")
    create_catalog_table(dynamodb, table.name)
    # A new table's stream numbers restart, so the last run's documents would look newer.
    sinks.opensearch.indices.delete(index=f"{table.index}-*", ignore_unavailable=True)
    for step in plan_setup(sinks.opensearch, table):
        echo(f"   setup: {step.action} {step.target}")
        apply_setup(sinks.opensearch, table, [step])

    echo(f"2. writing {item_count} items, moving sku-0001 to category 'sale', deleting sku-0002")
    for number in range(item_count):
        dynamodb.put_item(TableName=table.name, Item=_demo_item(number))
        sinks.redis.set(f"product:sku-{number:04d}", "cached-json")
    sinks.redis.set("category:sale", "cached-list")
    sinks.redis.set("category:unrelated", "cached-list")
    dynamodb.update_item(
        TableName=table.name,
        Key={"pk": {"S": "sku-0001"}, "sk": {"S": "v1"}},
        UpdateExpression="SET category = :c",
        ExpressionAttributeValues={":c": {"S": "sale"}},
    )
    dynamodb.delete_item(TableName=table.name, Key={"pk": {"S": "sku-0002"}, "sk": {"S": "v1"}})

    echo("3. following the stream with the worker of `syncer run --once` (same pipeline as Lambda)")
    invalidated: set[str] = set()

    def show(outcome: BatchOutcome) -> None:
        echo(
            f"   batch of {outcome.records_in} records: {outcome.keys} keys, {outcome.indexed} "
            f"indexed, {outcome.deleted} deleted, {outcome.invalidated} cache keys invalidated; "
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

    sinks.opensearch.indices.refresh(index=table.index)
    hits = sinks.opensearch.search(
        index=table.index,
        body={"query": {"match_all": {}}, "size": 5, "sort": [{"pk.keyword": "asc"}]},
    )
    total = hits["hits"]["total"]["value"]
    echo(f"4. search on alias {table.index!r}: {total} documents (sku-0002 deleted); first ones:")
    for hit in hits["hits"]["hits"]:
        source = hit["_source"]
        echo(
            f"   {hit['_id']}: {source.get('name')} [{source.get('category')}] price={source.get('price')}"
        )
    remaining = [key for key in sorted(invalidated) if sinks.redis.exists(key)]
    echo(
        f"5. cache keys invalidated: {len(invalidated)}, for example {sorted(invalidated)[:4]}; "
        f"still cached of those: {remaining}; untouched: category:unrelated="
        f"{sinks.redis.get('category:unrelated')!r}"
    )
