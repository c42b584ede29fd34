"""Read current items from DynamoDB for streams that carry no new image (KEYS_ONLY, OLD_IMAGE)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from syncer.attributes import decode_item
from syncer.records import ChangeRecord, document_id
from syncer.resilience import Deadline, Downstream, PendingItemsError

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


def read_current_items(
    client: Any,
    downstream: Downstream,
    table: str,
    records: Sequence[ChangeRecord],
    deadline: Deadline | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Consistent reads of the records' items with BatchGetItem, by document id; None if gone.

    UnprocessedKeys are retried with the downstream's backoff, as AWS asks.
    """
    found: dict[str, dict[str, Any] | None] = {record.document_id: None for record in records}
    unique = list({record.document_id: record for record in records}.values())
    for start in range(0, len(unique), BATCH_GET_LIMIT):
        chunk = unique[start : start + BATCH_GET_LIMIT]
        key_names = list(chunk[0].keys)
        pending = [_request_key(record.raw["dynamodb"]["Keys"]) for record in chunk]
        for attempt in downstream.retrying(deadline):
            with attempt:
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
    return found
