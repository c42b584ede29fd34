"""The ``_mget`` of target states on the real OpenSearch: ``_syncer`` and the named fields only."""

from __future__ import annotations

from syncer.core.documents import SYNCER_FIELD, TargetState
from syncer.sinks.search import read_targets
from tests.integration.conftest import Stack


def test_a_target_read_keeps_the_version_the_named_fields_and_absence(stack: Stack) -> None:
    """Each ref's state holds ``_syncer`` and the asked fields (whole, when nested), nothing
    more; an absent document and a document without ``_syncer`` read as such."""
    client = stack.sinks.opensearch
    meta = {"table": stack.table, "seq": "1" * 21, "deleted": False}
    client.index(
        index=stack.index,
        id="full",
        body={SYNCER_FIELD: meta, "pk": "p1", "dims": {"w": 1, "h": 2}, "other": "x" * 500},
    )
    client.index(index=stack.index, id="bare", body={"other": "y"})
    client.index(index=stack.index, id="tomb", body={SYNCER_FIELD: {**meta, "deleted": True}})
    refs = [(stack.index, doc_id) for doc_id in ("full", "bare", "tomb", "absent")]

    found = read_targets(client, refs, ["pk", "dims", "missing"])

    concrete = client.indices.get_alias(name=stack.index).popitem()[0]
    full = found[(stack.index, "full")].document
    assert full is not None
    assert dict(full.fields) == {SYNCER_FIELD: meta, "pk": "p1", "dims": {"w": 1, "h": 2}}
    assert full.version.seq == int("1" * 21)
    assert not full.deleted
    bare = found[(stack.index, "bare")].document
    assert bare is not None
    assert dict(bare.fields) == {}
    assert bare.version.seq is None
    tomb = found[(stack.index, "tomb")].document
    assert tomb is not None
    assert tomb.deleted
    assert set(tomb.fields) == {SYNCER_FIELD}
    assert found[(stack.index, "absent")] == TargetState(concrete, None)
    assert {state.index for state in found.values()} == {concrete}
