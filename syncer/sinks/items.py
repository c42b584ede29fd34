"""Read current items from DynamoDB for streams that carry no new image (KEYS_ONLY, OLD_IMAGE)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from syncer.core.attributes import decode_item
from syncer.core.records import ChangeRecord, document_id
from syncer.sinks.resilience import Deadline, Downstream, PendingItemsError

BATCH_GET_LIMIT = 100


def _request_key(typed_keys: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    # Lambda JSON carries binary as base64 text; boto3 wants bytes and encodes them itself.
    request = {}
    for name, typed in typed_keys.items():
        ((tag, value),) = typed.items()
        request[name] = (
            {"B": base64.b64decode(value)} if tag == "B" and isinstance(value, str) else dict(typed)
        )
    return request


def key_schema(client: Any, downstream: Downstream, table: str) -> dict[str, str]:
    """The table's key attributes and their types (S, N or B), hash key first."""
    description = downstream.call_with_retry(client.describe_table, TableName=table)["Table"]
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    return {key["AttributeName"]: types[key["AttributeName"]] for key in description["KeySchema"]}


def read_items_by_key(
    client: Any,
    downstream: Downstream,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    deadline: Deadline | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Consistent reads with BatchGetItem of boto3-typed ``keys``, by document id; None if gone.

    UnprocessedKeys are retried with the downstream's backoff, as AWS asks.
    """
    found: dict[str, dict[str, Any] | None] = {}
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        chunk = list(keys[start : start + BATCH_GET_LIMIT])
        key_names = list(chunk[0])
        pending = chunk
        for attempt in downstream.retrying(deadline):
            with attempt:
                downstream.check_time(deadline)
                response = downstream.call(
                    client.batch_get_item,
                    RequestItems={table: {"Keys": pending, "ConsistentRead": True}},
                )
                for item in response.get("Responses", {}).get(table, []):
                    decoded = decode_item(item)
                    found[document_id({name: decoded[name] for name in key_names})] = decoded
                pending = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                if pending:
                    raise PendingItemsError(len(pending), "UnprocessedKeys from BatchGetItem")
        for key in chunk:
            found.setdefault(_id_of_typed_key(key), None)
    return found


def _id_of_typed_key(key: Mapping[str, Any]) -> str:
    lambda_json = {
        name: {"B": base64.b64encode(typed["B"]).decode()} if "B" in typed else dict(typed)
        for name, typed in key.items()
    }
    return document_id(decode_item(lambda_json))


def read_current_items(
    client: Any,
    downstream: Downstream,
    table: str,
    records: Sequence[ChangeRecord],
    deadline: Deadline | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Consistent reads of the records' items, by document id; None where an item is gone."""
    unique = list({record.document_id: record for record in records}.values())
    keys = [_request_key(record.raw["dynamodb"]["Keys"]) for record in unique]
    return read_items_by_key(client, downstream, table, keys, deadline)
