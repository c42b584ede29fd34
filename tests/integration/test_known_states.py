"""Known states on the real services: an update of a document the container wrote is planned
unread, and OpenSearch's checks (or a read) keep it from ever going back in time
(docs/ordering.md, "Mechanism")."""

from __future__ import annotations

from typing import Any

import pytest

from syncer import handler
from syncer.config.names import reindex_alias
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _item(pk: str, category: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": category}}


def _source(stack: Stack, index: str, doc_id: str) -> dict[str, Any] | None:
    found = stack.sinks.opensearch.get(index=index, id=doc_id, params={"ignore": 404})
    return found.get("_source") if found.get("found") else None


def test_an_update_of_a_document_the_container_wrote_is_written_unread(stack: Stack) -> None:
    """The second batch finds the state the first wrote among the container's known states."""
    stack.put(_item("p1", "shoes"))
    stack.deliver()
    known = handler._get_container().sinks.known
    assert len(known) == 1
    stack.put(_item("p1", "boots"))
    assert stack.deliver() == [{"batchItemFailures": []}]
    assert stack.indexed()["p1|v1"]["category"] == "boots"
    ((_, state),) = known.lookup([(stack.index, "p1|v1")]).items()
    assert state.document is not None
    assert not state.document.deleted


def test_after_the_alias_moved_unblocked_the_change_lands_where_it_points(stack: Stack) -> None:
    """A known state in an index the alias has left is not used: the change is read and
    written in the index the alias names now (the old one, not blocked, is left as it was)."""
    client = stack.sinks.opensearch
    stack.put(_item("p1", "shoes"))
    stack.deliver()
    ((old_index, entry),) = client.indices.get_alias(name=stack.index).items()
    new_index = f"{stack.index}-moved"
    client.indices.create(index=new_index)
    alias_body = {"alias": stack.index, **entry["aliases"][stack.index]}
    client.indices.update_aliases(
        body={
            "actions": [
                {"remove": {"index": old_index, "alias": stack.index}},
                {"add": {"index": new_index, **alias_body}},
            ]
        }
    )
    stack.put(_item("p1", "boots"))
    assert stack.deliver() == [{"batchItemFailures": []}]
    client.indices.refresh(index=f"{old_index},{new_index}")
    assert (_source(stack, new_index, "p1|v1") or {}).get("category") == "boots"
    assert (_source(stack, old_index, "p1|v1") or {}).get("category") == "shoes"


def test_a_document_another_writer_changed_is_never_overwritten_with_an_older_change(
    stack: Stack,
) -> None:
    """This container keeps the first state; another container writes the third; this one's
    second change, newer than what it keeps, meets a 409, is read, and loses to the third."""
    batches = []
    for category in ("shoes", "boots", "sandals"):
        stack.put(_item("p1", category))
        batches.append([r for r in stack.new_records() if all(r is not b for b in batches)])
    seen: set[str] = set()
    for batch in batches:
        batch[:] = [r for r in batch if r["dynamodb"]["SequenceNumber"] not in seen]
        seen.update(r["dynamodb"]["SequenceNumber"] for r in batch)
    first, second, third = batches
    assert [len(b) for b in batches] == [1, 1, 1]
    stack.invoke(first)  # this container keeps the "shoes" state
    container = handler._get_container()
    handler.reset_container()
    stack.invoke(third)  # another container writes "sandals"
    handler._container = container  # back to the first, whose known state is stale
    assert stack.invoke(second) == {"batchItemFailures": []}
    assert stack.indexed()["p1|v1"]["category"] == "sandals"


def _count_alias_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The container's alias requests (``HEAD`` and ``GET _alias``), in order."""
    client = handler._get_container().sinks.search.client
    calls: list[str] = []
    for name in ("exists_alias", "get_alias"):
        original = getattr(client.indices, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(client.indices, name, counted)
    return calls


def test_a_batch_of_known_documents_asks_about_its_aliases_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One GET _alias resolves the alias and says whether a reindex alias exists: no HEAD."""
    stack.put(_item("p1", "shoes"))
    stack.deliver()
    calls = _count_alias_requests(monkeypatch)
    stack.put(_item("p1", "boots"))
    assert stack.deliver() == [{"batchItemFailures": []}]
    assert calls == ["get_alias"]
    assert stack.indexed()["p1|v1"]["category"] == "boots"


def test_a_known_document_reaches_a_reindex_index_the_same_request_found(stack: Stack) -> None:
    """While a reindex alias exists, the change of a known document is written there too."""
    client = stack.sinks.opensearch
    stack.put(_item("p1", "shoes"))
    stack.deliver()
    rebuilt = f"{stack.index}-rebuilt"
    client.indices.create(index=rebuilt)
    client.indices.put_alias(index=rebuilt, name=reindex_alias(stack.index))
    stack.put(_item("p1", "boots"))
    assert stack.deliver() == [{"batchItemFailures": []}]
    client.indices.refresh(index=rebuilt)
    assert (_source(stack, rebuilt, "p1|v1") or {}).get("category") == "boots"
