"""The README's demo: a routed single-table catalog in the emulator, its stream, search and cache."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

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
    # DescribeTable, not ListTables: that answers 100 names a page, so a table past the first
    # page would look absent and CreateTable would fail with "Table already exists".
    try:
        dynamodb.describe_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        pass  # nothing to recreate
    else:
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


def demo_table(name: str = DEMO_TABLE) -> TableConfig:
    """The demo's single-table catalog: reviews by type, products and categories by key prefix."""
    return TableConfig(
        name=name,
        index="",  # items no route selects (orders) are skipped and counted
        routes=(
            Route(
                f"{name}-reviews",
                RouteMatch("type", "equals", "review"),
                ("reviews:{pk}",),
            ),
            Route(
                f"{name}-products",
                RouteMatch("sk", "begins_with", "PRODUCT#"),
                ("product:{pk}", "category:{category}"),
                frozenset({"cost"}),
                PRODUCT_TRANSFORM,
            ),
            Route(
                f"{name}-categories",
                RouteMatch("sk", "begins_with", "CATEGORY#"),
                ("category-page:{pk}",),
            ),
        ),
    )


# The products the demo changes, by number; the rest of the catalog is generated.
_NAMED_PRODUCTS = (
    ("Leather ankle boot", "shoes"),  # 0
    ("Wool winter hat", "hats"),  # 1: moved to the 'sale' category
    ("Leather tote bag", "bags"),  # 2: deleted
    ("Canvas sneaker", "shoes"),  # 3: hidden (the transform keeps it out of search)
    ("Leather belt bag", "bags"),  # 4: cached, never changed
    ("Straw sun hat", "hats"),  # 5
    ("Suede chelsea boot", "shoes"),  # 6: its review becomes a question
)
MIN_ITEMS = len(_NAMED_PRODUCTS)
_MATERIALS = ("Cotton", "Nylon", "Linen", "Felt", "Denim", "Wool", "Canvas")
_KINDS = {"shoes": "loafer", "hats": "cap", "bags": "backpack"}
MOVED, DELETED, HIDDEN, UNTOUCHED = 1, 2, 3, 4
WATCHED = (MOVED, UNTOUCHED)  # the product keys a reader caches before the changes
FULL_TEXT_QUERY = "leather bag"


def _sku(number: int) -> str:
    return f"PRODUCT#sku-{number:04d}"


def _product_key(number: int) -> str:
    return f"product:{_sku(number)}"


def _product(number: int) -> dict[str, Any]:
    if number < len(_NAMED_PRODUCTS):
        name, category = _NAMED_PRODUCTS[number]
    else:
        category = ("shoes", "hats", "bags")[number % 3]
        name = f"{_MATERIALS[number % len(_MATERIALS)]} {_KINDS[category]} no. {number}"
    return {
        "pk": {"S": _sku(number)},
        "sk": {"S": _sku(number)},
        "type": {"S": "product"},
        "name": {"S": name},
        "category": {"S": category},
        "price": {"N": str(Decimal(number) + Decimal("0.99"))},
        "tags": {"SS": ["demo", f"batch-{number % 2}"]},
        "cost": {"N": "1.25"},
    }


def _review(number: int) -> dict[str, Any]:
    return {
        "pk": {"S": _sku(number)},
        "sk": {"S": "REVIEW#1"},
        "type": {"S": "review"},
        "stars": {"N": str(1 + number % 5)},
        "text": {"S": "Fits well."},
    }


def _category(name: str) -> dict[str, Any]:
    key = f"CATEGORY#{name}"
    return {"pk": {"S": key}, "sk": {"S": key}, "type": {"S": "category"}, "title": {"S": name}}


class KinesisSource(Protocol):
    """The demo's changes on a Kinesis stream instead of the table's DynamoDB stream.

    The emulator cannot stream a table to Kinesis, so something outside the package (the test
    bridge, ``make demo SOURCE=kinesis``) publishes them: ``publish`` brings every change made
    so far onto ``stream``, as Kinesis Data Streams for DynamoDB would (out of order and with
    duplicates, if it likes).
    """

    stream: str

    def publish(self, table: str) -> int:
        """Publish the table's changes not published yet; how many records were written."""
        ...


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo showed, for its test: search answers, cache keys, the tombstone."""

    full_text_titles: list[str]  # names the full-text query found, best first
    cached_before: dict[str, bool]  # product keys a reader cached, before the changes
    cached_after: dict[str, bool]  # the same keys once syncer applied the changes
    deleted_title: str
    deleted_hits: int  # search hits for the deleted product's name, through the alias
    tombstone: Mapping[str, Any] | None  # its document in the index behind the alias


def run_demo(
    config: Config,
    item_count: int,
    echo: Callable[[str], None],
    table_name: str = DEMO_TABLE,
    kinesis: KinesisSource | None = None,
) -> DemoReport:
    """Write a catalog, sync it, cache two products, change the catalog, sync again; show
    what search and the cache hold. ``table_name`` names the table and its indices' prefix;
    with ``kinesis`` the worker follows that Kinesis stream instead of the DynamoDB stream."""
    from syncer.client.cachefill import LeasedCache
    from syncer.core.routes import routing_table
    from syncer.sinks.build import aws_client, build_sinks
    from syncer.sinks.indices import apply_setup, plan_setup

    if not aws_endpoint_overridden():
        raise ConfigError(
            "the demo runs against the local emulator: set AWS_ENDPOINT_URL (see README)"
        )
    if item_count < MIN_ITEMS:
        raise ConfigError(f"the demo needs at least {MIN_ITEMS} items (--items), got {item_count}")
    # The demo owns its table and indices, so it never touches a configured one.
    table = demo_table(table_name)
    config = replace(config, tables=(table,))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    try:
        echo(f"1. creating table {table.name!r} with a NEW_AND_OLD_IMAGES stream in the emulator")
        echo("   routes, first match wins:")
        for line in routing_table(table):
            echo(f"     {line}")
        create_catalog_table(dynamodb, table.name)
        for route in table.resolved_routes:
            view = table.route_table(route)
            # A new table's stream numbers restart, so the last run's documents would look newer.
            # Only this alias's versioned indices (<alias>-000001): "-*" would also match another
            # alias that starts with this one's name and a dash.
            sinks.opensearch.indices.delete(index=f"{view.index}-0*", ignore_unavailable=True)
            for step in plan_setup(sinks.opensearch, view):
                echo(f"   setup: {step.action} {step.target}")
                apply_setup(sinks.opensearch, view, [step])
        with tempfile.TemporaryDirectory(prefix="syncer-demo-") as scratch:
            checkpoints = Path(scratch) / "checkpoints.json"
            sync = functools.partial(
                _follow_stream, config, sinks, dynamodb, checkpoints, echo, kinesis
            )
            cache = LeasedCache(sinks.redis.connected())
            load = functools.partial(_load_product, dynamodb, table.name)
            echo(
                f"2. writing {item_count} products, a review of every third, 4 categories and "
                "an order"
            )
            _write_catalog(dynamodb, table.name, item_count)
            sync()
            echo("3. a service reads two products through the cache (syncer.client.cachefill)")
            for number in WATCHED:
                value = cache.get_or_fill(_product_key(number), functools.partial(load, number))
                echo(f"   {_product_key(number)} = {(value or b'').decode()}")
            cached_before = _cached(sinks.redis)
            echo(
                f"4. changing the catalog: moving sku-{MOVED:04d} to 'sale', deleting "
                f"sku-{DELETED:04d}, hiding sku-{HIDDEN:04d}, turning the review of sku-0006 "
                "into a question"
            )
            _change_catalog(dynamodb, table.name)
            sync()  # from the checkpoints the first run saved: only the changes
        titles, deleted_hits, tombstone = _show_search(sinks.opensearch, table, echo)
        cached_after = _cached(sinks.redis)
        echo("6. the cache, after syncer applied the changes:")
        for number in WATCHED:
            key = _product_key(number)
            before = "cached" if cached_before[key] else "not cached"
            now = _cached_text(sinks.redis.get(key))
            why = "changed" if number == MOVED else "not changed"
            echo(f"   {key} ({why}): {before} before the change; now {now}")
        refilled = cache.get_or_fill(_product_key(MOVED), functools.partial(load, MOVED))
        echo(f"   the next read loads the new state: {(refilled or b'').decode()}")
    finally:
        sinks.close()
    return DemoReport(
        full_text_titles=titles,
        cached_before=cached_before,
        cached_after=cached_after,
        deleted_title=_NAMED_PRODUCTS[DELETED][0],
        deleted_hits=deleted_hits,
        tombstone=tombstone,
    )


def _write_catalog(dynamodb: Any, table: str, item_count: int) -> None:
    for number in range(item_count):
        dynamodb.put_item(TableName=table, Item=_product(number))
        if number % 3 == 0:
            dynamodb.put_item(TableName=table, Item=_review(number))
    for name in ("shoes", "hats", "bags", "sale"):
        dynamodb.put_item(TableName=table, Item=_category(name))
    order = {"pk": {"S": "ORDER#1"}, "sk": {"S": "ORDER#1"}, "type": {"S": "order"}}
    dynamodb.put_item(TableName=table, Item=order)


def _cached(redis: Any) -> dict[str, bool]:
    """Whether each watched product key holds something now."""
    return {_product_key(n): bool(redis.exists(_product_key(n))) for n in WATCHED}


def _show_search(
    opensearch: Any, table: TableConfig, echo: Callable[[str], None]
) -> tuple[list[str], int, Mapping[str, Any] | None]:
    """Print each alias's documents, a full-text query and the deleted product's tombstone."""
    from syncer.core.records import document_id

    echo("5. search, through each route's alias:")
    for route in table.resolved_routes:
        opensearch.indices.refresh(index=route.index)
        found = opensearch.search(
            index=route.index, body={"size": 3, "sort": ["_doc"], "track_total_hits": True}
        )["hits"]
        examples = ", ".join(_title(hit["_source"]) for hit in found["hits"])
        echo(f"   {route.index}: {found['total']['value']} documents, such as {examples}")
    products = table.resolved_routes[1].index
    hits = opensearch.search(
        index=products, body={"query": {"match": {"name": FULL_TEXT_QUERY}}, "size": 5}
    )["hits"]["hits"]
    echo(f"   full text {FULL_TEXT_QUERY!r}: {'; '.join(_title(h['_source']) for h in hits)}")
    deleted_title = _NAMED_PRODUCTS[DELETED][0]
    deleted_hits = opensearch.search(
        index=products,
        body={"query": {"match_phrase": {"name": deleted_title}}, "track_total_hits": True},
    )["hits"]["total"]["value"]
    echo(
        f"   {deleted_title!r} (sku-{DELETED:04d}, deleted): {deleted_hits} hits through the alias"
    )
    (behind_alias,) = opensearch.indices.get_alias(name=products)
    deleted_id = document_id({"pk": _sku(DELETED), "sk": _sku(DELETED)})
    stored = opensearch.get(index=behind_alias, id=deleted_id, ignore=404)
    tombstone = stored.get("_source") if stored.get("found") else None
    echo(f"   its tombstone, in {behind_alias} behind the alias: {tombstone}")
    echo(f"   (sku-{HIDDEN:04d} hidden by the transform: a tombstone too; the order skipped)")
    return [hit["_source"]["name"] for hit in hits], deleted_hits, tombstone


def _follow_stream(
    config: Config,
    sinks: Any,
    dynamodb: Any,
    checkpoints: Path,
    echo: Callable[[str], None],
    kinesis: KinesisSource | None = None,
) -> None:
    """Run the worker of ``syncer run --once`` from its checkpoints to the stream's end."""
    from syncer.core.outcome import BatchOutcome
    from syncer.runner.poller import PollOptions, StreamPoller
    from syncer.sinks.build import aws_client
    from syncer.sinks.checkpoints import FileCheckpointStore

    if kinesis is not None:
        published = kinesis.publish(config.tables[0].name)
        echo(
            f"   {published} changes published to Kinesis stream {kinesis.stream!r}; following "
            "it with the worker of `syncer run --kinesis-stream --once` (the Lambda pipeline)"
        )
    else:
        echo("   following the stream with the worker of `syncer run --once` (the Lambda pipeline)")

    def show(outcome: BatchOutcome) -> None:
        echo(
            f"   batch of {outcome.records_in} records: {outcome.keys} keys, {outcome.indexed} "
            f"indexed, {outcome.deleted} deleted, {outcome.unrouted} unrouted (skipped), "
            f"{outcome.invalidated} cache keys invalidated; "
            f"Lambda response {outcome.lambda_response()}"
        )

    poller = StreamPoller(
        config,
        sinks,
        aws_client("dynamodbstreams"),
        dynamodb,
        FileCheckpointStore(checkpoints),
        PollOptions(once=True, idle_sleep_s=0.2),
        on_batch=show,
        kinesis=aws_client("kinesis") if kinesis is not None else None,
        kinesis_streams=[kinesis.stream] if kinesis is not None else (),
    )
    poller.run()


def _change_catalog(dynamodb: Any, table: str) -> None:
    def product_key(number: int) -> dict[str, Any]:
        return {"pk": {"S": _sku(number)}, "sk": {"S": _sku(number)}}

    dynamodb.update_item(
        TableName=table,
        Key=product_key(MOVED),
        UpdateExpression="SET category = :c",
        ExpressionAttributeValues={":c": {"S": "sale"}},
    )
    dynamodb.update_item(
        TableName=table,
        Key=product_key(HIDDEN),
        UpdateExpression="SET #h = :h",
        ExpressionAttributeNames={"#h": "hidden"},
        ExpressionAttributeValues={":h": {"BOOL": True}},
    )
    dynamodb.delete_item(TableName=table, Key=product_key(DELETED))
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": _sku(6)}, "sk": {"S": "REVIEW#1"}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":t": {"S": "question"}},
    )


def _load_product(dynamodb: Any, table: str, number: int) -> bytes | None:
    """What the reading service caches: a product's name, category and price, read consistently
    (docs/cache-consistency.md: a lease cannot help an eventually consistent read)."""
    got = dynamodb.get_item(
        TableName=table,
        Key={"pk": {"S": _sku(number)}, "sk": {"S": _sku(number)}},
        ConsistentRead=True,
    )
    item = got.get("Item")
    if item is None:
        return None
    shown = {
        name: item[name].get("S", item[name].get("N")) for name in ("name", "category", "price")
    }
    return json.dumps(shown).encode()


def _title(source: Mapping[str, Any]) -> str:
    """A document as a reader would name it: a product's name, a category's title, a review."""
    if "name" in source:
        return f"{source['name']} ({source.get('category')}, {source.get('price')})"
    if "title" in source:
        return str(source["title"])
    return f"{source.get('stars')}/5: {source.get('text')}"


def _cached_text(stored: bytes | None) -> str:
    """A cache key's value as a reader gets it: the envelope of syncer.client.cachefill off."""
    from syncer.client.cachefill import decode_entry

    entry = None if stored is None else decode_entry(stored)
    if entry is None:
        return "absent" if stored is None else "a lease (a reader is loading it)"
    return "cached: " + ("no such item" if entry.value is None else entry.value.decode())
