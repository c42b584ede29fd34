"""What the rebuild tests share: a catalog item, the table's items, and the check that a
rebuild left no reindex alias and no write block behind."""

from __future__ import annotations

from typing import Any

from syncer.sinks.search import reindex_alias
from tests.integration.conftest import Stack


def catalog_item(pk: str, price: int = 10, category: str = "shoes") -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "category": {"S": category},
        "price": {"N": str(price)},
        "cost": {"N": "1"},
    }


def table_items(stack: Stack) -> list[dict[str, Any]]:
    """Every item of the stack's table, as DynamoDB's typed JSON (consistent reads)."""
    paginator = stack.dynamodb.get_paginator("scan")
    pages = paginator.paginate(TableName=stack.table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def no_rebuild_left(stack: Stack) -> None:
    """No reindex alias, and no write block on the index the alias serves."""
    client = stack.sinks.opensearch
    assert not client.indices.exists_alias(name=reindex_alias(stack.index))
    for name in client.indices.get_alias(name=stack.index):
        settings = client.indices.get_settings(index=name)[name]["settings"]["index"]
        assert str(settings.get("blocks", {}).get("write", "false")) == "false"
