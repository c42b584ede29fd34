"""What the reindex scan read as absent stays absent after the swap (issue 19, item 2).

An item deleted (or moved to another route) while its change is still on its way is live in the
old index and absent from the scan. Without a state in the new index, a replay of its older
insert after the swap would bring it back; the reindex leaves a tombstone with a read's version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.commands.reindex import ReindexOptions, reindex_table
from syncer.commands.verify import verify_table
from syncer.core.records import document_id
from syncer.core.versions import CLOCK_UNCERTAINTY_MS
from tests.integration.conftest import Stack
from tests.integration.routed_catalog import RoutedCatalog, product, routed_catalog

pytestmark = pytest.mark.integration

# A change is "certainly before" a read once its whole second and the clock margin have passed.
CERTAINLY_PAST_S = 1.0 + CLOCK_UNCERTAINTY_MS / 1000 + 0.2


def _item(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": "shoes"}, "price": {"N": "1"}}


def _reindex(stack: Stack, tmp_path: Path) -> None:
    options = ReindexOptions(segments=2)
    reindex_table(stack.config, stack.sinks, stack.table, options=options)


def test_an_insert_replayed_after_a_reindex_that_read_the_item_as_absent_stays_out(
    stack: Stack, tmp_path: Path
) -> None:
    """INSERT applied, item deleted with its REMOVE in flight, reindex, INSERT again: not found."""
    # given an item inserted and applied, then deleted while its REMOVE is not delivered yet
    stack.put(_item("g"))
    (insert,) = stack.new_records()
    stack.deliver()
    stack.delete("g", "v1")
    (remove,) = stack.new_records()
    time.sleep(CERTAINLY_PAST_S)
    # when the table is reindexed (the scan finds nothing) and the INSERT arrives again
    _reindex(stack, tmp_path)
    stack.invoke([insert])
    # then the item is not searchable, and stays so once its REMOVE arrives
    assert "g|v1" not in stack.indexed()
    stack.invoke([remove])
    assert stack.indexed() == stack.scanned() == {}
    assert verify_table(stack.config, stack.sinks, stack.table).drift == 0


@pytest.fixture
def catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view_type: str
) -> Iterator[RoutedCatalog]:
    yield from routed_catalog(tmp_path, monkeypatch, view_type)


def test_an_item_that_moved_route_stays_out_of_its_old_route_after_a_reindex(
    catalog: RoutedCatalog, tmp_path: Path
) -> None:
    """A product turned review while its change is in flight: a replayed INSERT stays out."""
    # given a product applied to the products index, then made a review, its MODIFY in flight
    stack = catalog.stack
    stack.put(product("9"))
    (insert,) = stack.new_records()
    stack.deliver()
    stack.put({**product("9"), "type": {"S": "review"}})
    (move,) = stack.new_records()
    time.sleep(CERTAINLY_PAST_S)
    # when the table is reindexed (the scan writes it to reviews only) and the INSERT comes again
    options = ReindexOptions(segments=2)
    reindex_table(stack.config, stack.sinks, stack.table, options=options)
    stack.invoke([insert])
    # then it is not a product in search, and everything converges once the move arrives
    assert document_id({"pk": "PRODUCT#9", "sk": "PRODUCT#9"}) not in catalog.indexed("products")
    stack.invoke([move])
    catalog.assert_converged()
