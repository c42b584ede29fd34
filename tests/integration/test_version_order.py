"""One version order on the real services: reindex, verify, redrive and a new stream (issue 10).

Each test reproduces a case that went back in time on the code before versions existed.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.commands.reindex import ReindexOptions, reindex_table
from syncer.commands.verify import verify_table
from syncer.config import Config, load_config
from syncer.core.versions import CLOCK_UNCERTAINTY_MS
from syncer.demo import create_catalog_table
from syncer.pipeline import process_batch
from syncer.sinks.build import aws_client, build_sinks
from syncer.sinks.indices import apply_setup, plan_setup
from syncer.sinks.ports import Sinks
from tests.integration.conftest import Stack, write_config

pytestmark = pytest.mark.integration

# A change is "certainly before" a read once its whole second and the clock margin have passed.
CERTAINLY_PAST_S = 1.0 + CLOCK_UNCERTAINTY_MS / 1000 + 0.2


def _item(pk: str, category: str = "shoes", price: str = "10") -> dict[str, Any]:
    return {
        "pk": {"S": pk},
        "sk": {"S": "v1"},
        "category": {"S": category},
        "price": {"N": price},
        "cost": {"N": "1"},
    }


def _reindex(stack: Stack, tmp_path: Path) -> None:
    options = ReindexOptions(segments=1)
    reindex_table(stack.config, stack.sinks, stack.table, options=options)


def _live(stack: Stack, doc_id: str) -> dict[str, Any] | None:
    return stack.indexed().get(doc_id)


def test_older_change_after_a_reindex_does_not_replace_the_scanned_state(
    stack: Stack, tmp_path: Path
) -> None:
    """A replayed older change after a reindex loses to the newer scanned state (case 1)."""
    # given an item changed twice, both changes applied, then a reindex that scanned it
    stack.put(_item("x", category="shoes"))
    (first,) = stack.new_records()
    stack.deliver()
    stack.put(_item("x", category="hats"))
    stack.deliver()
    time.sleep(CERTAINLY_PAST_S)
    _reindex(stack, tmp_path)
    # when the first change is delivered again (a bisected retry, a replayed window)
    stack.invoke([first])
    # then the index still holds the newer state
    assert _live(stack, "x|v1") == {"pk": "x", "sk": "v1", "category": "hats", "price": 10}
    assert stack.indexed() == stack.scanned()


def test_older_change_after_a_verify_repair_does_not_replace_the_repaired_state(
    stack: Stack,
) -> None:
    """A repair writes its read's version, so an older change delivered later loses (case 1)."""
    # given an item changed twice, and its document lost behind syncer's back
    stack.put(_item("r", category="shoes"))
    (first,) = stack.new_records()
    stack.deliver()
    stack.put(_item("r", category="hats"))
    stack.deliver()
    alias = stack.index
    (index,) = stack.sinks.opensearch.indices.get_alias(name=alias)
    stack.sinks.opensearch.delete(index=index, id="r|v1", params={"refresh": "true"})
    time.sleep(CERTAINLY_PAST_S)
    # when verify repairs it and then the first change is delivered again
    report = verify_table(stack.config, stack.sinks, stack.table, repair=True)
    assert report.missing == ["r|v1"]
    stack.invoke([first])
    # then the repaired, newer state stays
    assert _live(stack, "r|v1") == {"pk": "r", "sk": "v1", "category": "hats", "price": 10}


def test_reindex_carries_tombstones_so_a_replayed_insert_stays_deleted(
    stack: Stack, tmp_path: Path
) -> None:
    """A deleted item stays deleted after a reindex and a replay of its insert (case 2)."""
    # given an item inserted and deleted, both applied, then a reindex
    stack.put(_item("y"))
    (insert,) = stack.new_records()
    stack.deliver()
    stack.delete("y", "v1")
    stack.deliver()
    _reindex(stack, tmp_path)
    # when the insert is delivered again
    stack.invoke([insert])
    # then y is not searchable, as in the table
    assert _live(stack, "y|v1") is None
    assert stack.indexed() == stack.scanned()
    assert verify_table(stack.config, stack.sinks, stack.table).drift == 0


def _on_stream(record: dict[str, Any], label: str, sequence: int) -> dict[str, Any]:
    """``record`` as a record of the table's stream created at ``label`` with ``sequence``."""
    moved = copy.deepcopy(record)
    arn = moved["eventSourceARN"]
    moved["eventSourceARN"] = arn[: arn.index("/stream/")] + f"/stream/{label}"
    moved["dynamodb"]["SequenceNumber"] = str(sequence)
    return moved


def test_a_new_stream_wins_even_with_lower_sequence_numbers(stack: Stack) -> None:
    """Changes of a re-created stream apply over the old stream's; the old one's late record loses.

    Sequence numbers of a new stream are not documented to be higher (case 3): on the old code
    every change of the new stream was skipped as stale, silently.
    """
    # given a change applied from an old stream, with a high sequence number
    stack.put(_item("z", category="shoes"))
    (old_change,) = stack.new_records()
    stack.put(_item("z", category="hats"))
    (new_change,) = stack.new_records()[1:]
    old = _on_stream(old_change, "2020-01-01T00:00:00.000", 9 * 10**30)
    new = _on_stream(new_change, "2030-01-01T00:00:00.000", 10**21)
    late_old = _on_stream(old_change, "2020-01-01T00:00:00.000", 9 * 10**30 + 5)
    assert stack.invoke([old]) == {"batchItemFailures": []}
    # when the new stream's change arrives with a lower sequence number
    stack.invoke([new])
    # then it applies
    assert _live(stack, "z|v1") == {"pk": "z", "sk": "v1", "category": "hats", "price": 10}
    # and a late record of the old stream, however high its number, loses
    stack.invoke([late_old])
    assert _live(stack, "z|v1") == {"pk": "z", "sk": "v1", "category": "hats", "price": 10}


@pytest.fixture
def numeric_sort_key_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Config, Sinks, str, Any]]:
    """A table whose sort key is a number, with ``sk`` in exclude_attributes."""
    suffix = uuid.uuid4().hex[:8]
    table, index = f"num-keys-{suffix}", f"num-keys-it-{suffix}"
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = write_config(tmp_path / "syncer.toml", table, index)
    text = path.read_text().replace('"product:{pk}:{sk}", ', "")
    path.write_text(
        text.replace('exclude_attributes = ["cost"]', 'exclude_attributes = ["cost", "sk"]')
    )
    config = load_config(str(path))
    sinks = build_sinks(config)
    dynamodb = aws_client("dynamodb")
    create_catalog_table(dynamodb, table, view_type=None, key_types=("S", "N"))
    apply_setup(sinks.opensearch, config.tables[0], plan_setup(sinks.opensearch, config.tables[0]))
    yield config, sinks, table, dynamodb
    dynamodb.delete_table(TableName=table)
    sinks.opensearch.indices.delete(index=f"{index}-*")
    sinks.opensearch.indices.delete_index_template(name=f"syncer-{index}")


def test_verify_sample_repair_keeps_documents_of_long_numeric_keys(
    numeric_sort_key_table: tuple[Config, Sinks, str, Any],
) -> None:
    """verify --sample --repair finds no ghost and deletes nothing for exact numeric keys (case 5).

    The sort key has 20 significant digits and is excluded from the document: on the old code
    the key was rebuilt from ``_source`` (a double, or absent), every sampled document was called
    a ghost and the repair tombstoned live documents.
    """
    config, sinks, table, dynamodb = numeric_sort_key_table
    # given items whose sort keys have more digits than a double holds, indexed by the stream
    records = []
    for number in range(1, 6):
        sk = f"1700000000.12345678{number:02d}"
        item = {"pk": {"S": f"p{number}"}, "sk": {"N": sk}, "category": {"S": "shoes"}}
        dynamodb.put_item(TableName=table, Item=item)
        records.append(
            {
                "eventID": str(number),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
                "/stream/2024-01-01T00:00:00.000",
                "dynamodb": {
                    "Keys": {"pk": item["pk"], "sk": item["sk"]},
                    "NewImage": item,
                    "SequenceNumber": f"{10**20 + number}",
                    "ApproximateCreationDateTime": 1704067200,
                    "StreamViewType": "NEW_IMAGE",
                },
            }
        )
    assert process_batch(records, config, sinks).indexed == 5
    # when a sampled verify repairs
    report = verify_table(config, sinks, table, sample=10, repair=True)
    # then nothing was a ghost and every document is still searchable
    assert report.ghost == []
    assert report.drift == 0
    sinks.opensearch.indices.refresh(index=config.tables[0].index)
    count = sinks.opensearch.count(index=config.tables[0].index)["count"]
    assert count == 5
