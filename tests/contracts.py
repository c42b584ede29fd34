"""One contract per port, run against the in-memory fake and the real adapter alike.

A subclass supplies the fixtures (``search``/``alias`` and ``document``, ``cache`` and
``put_cache``, ``items`` and ``put_item``, ``letters`` and ``written_letters``); every test here
then runs on it. tests/unit/test_port_contracts.py runs them on tests/fakes.py,
tests/integration/test_port_contracts.py on the real services.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from syncer.config.names import reindex_alias
from syncer.core.documents import (
    SYNCER_FIELD,
    Decision,
    DocumentRef,
    DocumentWrite,
    ReadState,
    Settled,
    TargetState,
    Verdict,
    WriteKind,
)
from syncer.core.known import KnownStates
from syncer.core.rounds import write_documents
from syncer.core.versions import Version
from syncer.core.writes import ApplyResult, Planner, WriteOptions, WriteRounds
from syncer.sinks.deadletter import DeadLetter


def _body(seq: int, **fields: Any) -> dict[str, Any]:
    return {**fields, SYNCER_FIELD: {"table": "t", "deleted": False, "seq": str(seq).zfill(40)}}


def writer(seq: int, **fields: Any) -> Callable[..., Decision]:
    """A planner writing ``fields`` at ``seq`` unless the index holds that or newer."""

    def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
        held = target.document
        if held is not None and (held.version.seq or 0) >= seq:
            return Verdict.SKIP
        return DocumentWrite(ref, WriteKind.INDEX, _body(seq, **fields), held)

    return plan


def apply(
    search: WriteRounds, refs: list[DocumentRef], plan: Planner, options: WriteOptions | None = None
) -> ApplyResult:
    """The write rounds, the one way syncer writes documents, over the store under test."""
    return write_documents(search, refs, plan, options or WriteOptions())


def new_id() -> str:
    return f"doc-{uuid.uuid4().hex[:10]}"


class SearchContract:
    """The search store: conditional writes settled per ref, re-planned on conflicts."""

    def test_a_write_over_nothing_creates_the_document(self, search, alias, document) -> None:
        """A write planned against an absent document creates it."""
        doc_id = new_id()
        result = apply(search, [(alias, doc_id)], writer(5, name="boot"))
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert document(alias, doc_id)["name"] == "boot"

    def test_a_newer_write_replaces_what_it_read(self, search, alias, document) -> None:
        """A write planned against the state read replaces it; the state read is reported."""
        doc_id = new_id()
        apply(search, [(alias, doc_id)], writer(5, name="boot"))
        result = apply(
            search, [(alias, doc_id)], writer(6, name="shoe"), WriteOptions(fields=("name",))
        )
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert result.observed[(alias, doc_id)].fields["name"] == "boot"
        assert document(alias, doc_id)["name"] == "shoe"

    def test_an_older_write_is_skipped(self, search, alias, document) -> None:
        """A planner's SKIP settles the ref and leaves the document as it is."""
        doc_id = new_id()
        apply(search, [(alias, doc_id)], writer(6, name="shoe"))
        result = apply(search, [(alias, doc_id)], writer(5, name="boot"))
        assert result.status((alias, doc_id)) is Settled.SKIPPED
        assert document(alias, doc_id)["name"] == "shoe"

    def test_a_conflict_is_planned_again_against_what_is_there(self, search, alias, document):
        """A create that meets a document (409) is read and planned again, then written."""
        doc_id = new_id()
        apply(search, [(alias, doc_id)], writer(5, name="boot"))
        seen: list[object] = []

        def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
            seen.append(target.document)
            return writer(6, name="shoe")(ref, target, read)

        options = WriteOptions(read_first=False)  # the first round assumes absence: a create
        result = apply(search, [(alias, doc_id)], plan, options)
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert seen[0] is None
        assert seen[-1] is not None
        assert document(alias, doc_id)["name"] == "shoe"

    def test_a_ref_assumed_absent_is_created_or_planned_again(self, search, alias, document):
        """``absent_first`` refs are created unread; one that meets a document is re-planned."""
        fresh, present = new_id(), new_id()
        apply(search, [(alias, present)], writer(5, name="boot"))
        options = WriteOptions(absent_first=frozenset({(alias, fresh), (alias, present)}))
        result = apply(search, [(alias, fresh), (alias, present)], writer(6, name="shoe"), options)
        assert result.status((alias, fresh)) is Settled.WRITTEN
        assert result.status((alias, present)) is Settled.WRITTEN
        assert document(alias, fresh)["name"] == "shoe"
        assert document(alias, present)["name"] == "shoe"
        older = apply(
            search,
            [(alias, present)],
            writer(4, name="old"),
            WriteOptions(absent_first=frozenset({(alias, present)})),
        )
        assert older.status((alias, present)) is Settled.SKIPPED
        assert document(alias, present)["name"] == "shoe"

    def test_an_unread_create_never_creates_an_index(self, search) -> None:
        """A ref assumed absent whose alias does not exist fails; no index gets its name."""
        missing = f"missing-{uuid.uuid4().hex[:8]}"
        ref = (missing, new_id())
        options = WriteOptions(absent_first=frozenset({ref}), read_first=True)
        result = apply(search, [ref], writer(5, name="boot"), options)
        assert result.status(ref) is Settled.FAILED
        assert not search.alias_exists(missing)
        assert search.mget([{"_index": missing, "_id": ref[1]}])[0].get("found") is not True

    # Known states (syncer.core.known): a write planned unread, checked by OpenSearch.
    def test_a_known_state_is_written_over_without_a_read(self, search, alias, document):
        """A ref whose state this process wrote is planned against it and written over."""
        doc_id, known = new_id(), KnownStates()
        seen: list[TargetState] = []

        def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
            seen.append(target)
            return writer(6, name="shoe")(ref, target, read)

        apply(search, [(alias, doc_id)], writer(5, name="boot"), WriteOptions(known=known))
        result = apply(search, [(alias, doc_id)], plan, WriteOptions(known=known))
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert [target.known for target in seen] == [True]
        assert document(alias, doc_id)["name"] == "shoe"
        state = known.lookup([(alias, doc_id)])[(alias, doc_id)].document
        assert state is not None
        assert state.version.seq == 6

    def test_a_known_state_changed_since_is_read_and_planned_again(self, search, alias, document):
        """Another writer's newer state since: the unread write meets a 409, then loses."""
        doc_id, known = new_id(), KnownStates()
        apply(search, [(alias, doc_id)], writer(5, name="boot"), WriteOptions(known=known))
        apply(search, [(alias, doc_id)], writer(7, name="sandal"))  # another worker
        result = apply(search, [(alias, doc_id)], writer(6, name="shoe"), WriteOptions(known=known))
        assert result.status((alias, doc_id)) is Settled.SKIPPED
        assert document(alias, doc_id)["name"] == "sandal"
        assert result.observed[(alias, doc_id)].fields.get(SYNCER_FIELD, {}).get("seq") == str(
            7
        ).zfill(40)

    def test_a_skip_on_a_known_state_is_read_first(self, search, alias, document):
        """A known state newer than the change proves nothing: what is indexed decides."""
        doc_id, known = new_id(), KnownStates()
        apply(search, [(alias, doc_id)], writer(7, name="sandal"), WriteOptions(known=known))

        def older(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
            return DocumentWrite(ref, WriteKind.INDEX, _body(3, name="clog"), target.document)

        apply(search, [(alias, doc_id)], older)  # the index went back (another index, a bug)
        result = apply(search, [(alias, doc_id)], writer(6, name="shoe"), WriteOptions(known=known))
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert document(alias, doc_id)["name"] == "shoe"

    def test_current_indices_names_each_existing_aliases_index(self, search, alias) -> None:
        """An alias resolves to its concrete index; one that does not exist is left out."""
        missing = f"missing-{uuid.uuid4().hex[:8]}"
        current = search.current_indices([alias, missing], None)
        assert set(current) == {alias}
        assert current[alias] != alias

    def test_a_conflict_is_settled_when_not_replanned(self, search, alias) -> None:
        """With ``replan_conflicts`` off a 409 settles the ref as CONFLICT."""
        doc_id = new_id()
        apply(search, [(alias, doc_id)], writer(5, name="boot"))
        options = WriteOptions(read_first=False, replan_conflicts=False)
        result = apply(search, [(alias, doc_id)], writer(6, name="shoe"), options)
        assert result.status((alias, doc_id)) is Settled.CONFLICT

    def test_an_absent_optional_alias_is_skipped(self, search, alias) -> None:
        """A ref of an optional alias that does not exist is skipped, the others written."""
        doc_id = new_id()
        refs = [(alias, doc_id), (reindex_alias(alias), doc_id)]
        options = WriteOptions(optional_aliases=frozenset({reindex_alias(alias)}))
        result = apply(search, refs, writer(5, name="boot"), options)
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert result.outcomes[(reindex_alias(alias), doc_id)].status is Settled.SKIPPED
        assert result.outcomes[(reindex_alias(alias), doc_id)].reason == "no reindex running"
        assert not search.alias_exists(reindex_alias(alias))
        assert search.alias_exists(alias)

    def test_a_missing_alias_fails_with_a_hint(self, search) -> None:
        """A required alias that does not exist fails its refs, saying to run setup."""
        ref = (f"missing-{uuid.uuid4().hex[:8]}", new_id())
        result = apply(search, [ref], writer(5, name="boot"))
        assert result.status(ref) is Settled.FAILED
        assert "syncer setup" in result.outcomes[ref].reason

    def test_a_body_json_cannot_encode_is_rejected_alone(self, search, alias, document) -> None:
        """A document with a lone surrogate is rejected; the others in the round are written."""
        bad, good = new_id(), new_id()

        def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
            name = "\udfff" if ref[1] == bad else "fine"
            return DocumentWrite(ref, WriteKind.INDEX, _body(5, name=name), target.document)

        result = apply(search, [(alias, bad), (alias, good)], plan)
        assert result.status((alias, bad)) is Settled.REJECTED
        assert "cannot be encoded" in result.outcomes[(alias, bad)].reason
        assert result.status((alias, good)) is Settled.WRITTEN
        assert document(alias, bad) is None

    def test_a_reread_is_asked_for_and_planned_with(self, search, alias, document) -> None:
        """REREAD asks the rereader, and the planner plans again with what it found."""
        doc_id = new_id()
        read = ReadState({"name": "fresh"}, Version(read_from_ms=1, read_to_ms=2))

        def plan(ref: DocumentRef, target: TargetState, got: ReadState | None) -> Decision:
            if got is None:
                return Verdict.REREAD
            return DocumentWrite(ref, WriteKind.INDEX, _body(7, **got.item), target.document)

        options = WriteOptions(reread=lambda refs: dict.fromkeys(refs, read))
        result = apply(search, [(alias, doc_id)], plan, options)
        assert result.status((alias, doc_id)) is Settled.WRITTEN
        assert result.rereads == 1
        assert document(alias, doc_id)["name"] == "fresh"


class CacheContract:
    """The cache: keys deleted, how many existed; values read back."""

    def test_invalidate_deletes_and_counts_what_existed(self, cache, put_cache) -> None:
        """Invalidating deletes every key and counts those that existed."""
        present, absent = f"k:{uuid.uuid4().hex}", f"k:{uuid.uuid4().hex}"
        put_cache(present, b"v")
        assert cache.read([present, absent]) == [b"v", None]
        assert cache.invalidate({present, absent}) == 1
        assert cache.read([present]) == [None]

    def test_nothing_to_invalidate_is_zero(self, cache) -> None:
        """No keys: nothing is sent, nothing existed."""
        assert cache.invalidate(set()) == 0
        assert cache.read([]) == []


class ItemsContract:
    """The table: consistent reads by key, by document id, with the read's interval."""

    def test_a_read_finds_the_item_or_none(self, items, table, put_item) -> None:
        """An existing key reads as its plain item, a missing one as None, both versioned."""
        pk = f"p-{uuid.uuid4().hex[:8]}"
        put_item({"pk": {"S": pk}, "sk": {"S": "v1"}, "name": {"S": "boot"}, "n": {"N": "3"}})
        started_ms = int(time.time() * 1000)
        keys = [{"pk": {"S": pk}, "sk": {"S": "v1"}}, {"pk": {"S": pk}, "sk": {"S": "v2"}}]
        states = items.read(table, keys)
        assert states[f"{pk}|v1"].item == {"pk": pk, "sk": "v1", "name": "boot", "n": 3}
        assert states[f"{pk}|v2"].item is None
        by_id = items.read(table, keys, ids=[f"{pk}|v1", f"{pk}|v2"])
        assert by_id[f"{pk}|v1"].item == states[f"{pk}|v1"].item
        assert by_id[f"{pk}|v2"].item is None
        version = states[f"{pk}|v1"].version
        assert version.is_read
        assert version.read_from_ms is not None
        assert version.read_from_ms >= started_ms - 1
        assert version.read_to_ms is not None
        assert version.read_to_ms >= version.read_from_ms


class LettersContract:
    """The dead letters: every letter durable once ``write`` returns."""

    def test_written_letters_are_kept_with_their_reason(self, letters, written_letters) -> None:
        """A written letter can be read back with its record, error and sequence number."""
        sequence = str(10**21 + int(uuid.uuid4().int % 10**6))
        record = {"eventSourceARN": "arn:x", "dynamodb": {"SequenceNumber": sequence}}
        letters.write([DeadLetter(record, "t", "PoisonRecordError", "bad", sequence)])
        found = [e for e in written_letters() if e.get("sequence_number") == sequence]
        assert len(found) == 1
        assert found[0]["error"]["class"] == "PoisonRecordError"
        assert found[0]["error"]["message"] == "bad"


# ---------------------------------------------------------------------------------------------
# The commands' ports: the admin port, and the search store's queries the commands send.
# ---------------------------------------------------------------------------------------------


def _state(seq: int, deleted: bool, changed_at_ms: int, **fields: Any) -> dict[str, Any]:
    meta = {"table": "t", "deleted": deleted, "seq": str(seq).zfill(40)}
    return {**fields, SYNCER_FIELD: {**meta, "changed_at": changed_at_ms}}


def put_states(search: Any, alias: str, states: dict[str, dict[str, Any]]) -> None:
    """Write each body under its id through the search store (the way syncer writes)."""

    def plan(ref: DocumentRef, target: TargetState, read: ReadState | None) -> Decision:
        body = states[ref[1]]
        kind = WriteKind.TOMBSTONE if body[SYNCER_FIELD]["deleted"] else WriteKind.INDEX
        return DocumentWrite(ref, kind, body, target.document)

    result = apply(search, [(alias, doc_id) for doc_id in states], plan)
    assert {result.status((alias, d)) for d in states} <= {Settled.WRITTEN, Settled.TOMBSTONED}


class AdminContract:
    """The admin port: aliases, indices, the write block, documents by id; and the search
    store's queries the commands send (purge's, the settle phases', verify's)."""

    def test_aliases_are_listed_and_swapped_in_one_request(self, admin, alias) -> None:
        """An alias names its index; a swap moves it; an unknown alias names none."""
        (current,) = admin.indices_of(alias)
        other, spare = f"{alias}-000009", f"{alias}-spare"
        assert admin.create_index(other) is True
        try:
            admin.put_alias(other, spare)
            admin.update_aliases(
                [
                    {"remove": {"index": current, "alias": alias}},
                    {"add": {"index": other, "alias": alias}},
                ]
            )
            assert admin.indices_of(alias) == [other]
            assert admin.indices_of(spare) == [other]
            assert admin.aliases_of(other) == sorted([alias, spare])
            assert admin.aliases_of(current) == []
            assert admin.indices_of(f"{alias}-nothing") == []
        finally:
            admin.delete_index(other)
        assert admin.indices_of(spare) == []
        assert not admin.index_exists(other)

    def test_an_alias_change_naming_a_missing_index_changes_nothing(self, admin, alias) -> None:
        """One action that cannot be done fails the request, and no action of it is done."""
        (current,) = admin.indices_of(alias)
        gone = f"{alias}-000077"
        with pytest.raises(Exception, match="index_not_found"):  # NotFoundError; the fake's own
            admin.update_aliases(
                [
                    {"remove": {"index": current, "alias": alias}},
                    {"add": {"index": gone, "alias": alias}},
                ]
            )
        assert admin.indices_of(alias) == [current]

    def test_indices_are_made_once_found_by_pattern_and_deleted(self, admin, alias) -> None:
        """``create_index`` says whether it made the index; a pattern finds it; deleting a
        missing index is no error."""
        made = f"{alias}-000042"
        try:
            assert admin.create_index(made) is True
            assert admin.create_index(made) is False
            assert admin.index_exists(made)
            assert made in admin.indices_matching(f"{alias}-0*")
            assert admin.primary_shards(made) >= 1
        finally:
            admin.delete_index(made)
        admin.delete_index(made)
        assert made not in admin.indices_matching(f"{alias}-0*")

    def test_a_write_block_refuses_writes_until_lifted(self, admin, search, alias) -> None:
        """A blocked index refuses writes (retried, then failed), and takes them once lifted."""
        (index,) = admin.indices_of(alias)
        doc_id = new_id()
        admin.set_write_block(index, True)
        try:
            assert admin.write_blocked(index)
            blocked = apply(search, [(alias, doc_id)], writer(5, name="boot"))
            assert blocked.status((alias, doc_id)) is Settled.FAILED
        finally:
            admin.set_write_block(index, False)
        assert not admin.write_blocked(index)
        result = apply(search, [(alias, doc_id)], writer(5, name="boot"))
        assert result.status((alias, doc_id)) is Settled.WRITTEN

    def test_a_concrete_index_is_written_by_its_name(self, admin, search, alias) -> None:
        """Refs may name the concrete index (purge's hits do): read, planned and written there."""
        (index,) = admin.indices_of(alias)
        doc_id = new_id()
        apply(search, [(alias, doc_id)], writer(5, name="boot"))
        result = apply(search, [(index, doc_id)], writer(6, name="shoe"))
        assert result.status((index, doc_id)) is Settled.WRITTEN
        assert admin.documents(index, [doc_id])[doc_id]["_source"]["name"] == "shoe"

    def test_documents_by_id_are_the_ones_held(self, admin, search, alias) -> None:
        """Found ids only, with their sequence numbers, with or without their source."""
        (index,) = admin.indices_of(alias)
        held, absent = new_id(), new_id()
        apply(search, [(alias, held)], writer(5, name="boot"))
        found = admin.documents(index, [held, absent])
        assert list(found) == [held]
        assert found[held]["_source"]["name"] == "boot"
        assert isinstance(found[held]["_seq_no"], int)
        bare = admin.documents(alias, [held], source=False)
        assert "_source" not in bare[held]
        assert admin.documents(index, []) == {}

    def test_queries_see_tombstones_only_through_the_index(self, admin, search, alias) -> None:
        """The alias hides tombstones; the concrete index shows them to a range query."""
        (index,) = admin.indices_of(alias)
        old, young, live = new_id(), new_id(), new_id()
        put_states(
            search,
            alias,
            {
                old: _state(5, True, 1_000),
                young: _state(5, True, 9_000),
                live: _state(5, False, 1_000, name="boot"),
            },
        )
        search.refresh(index)
        tombstones = {
            "bool": {
                "filter": [
                    {"term": {f"{SYNCER_FIELD}.deleted": True}},
                    {"range": {f"{SYNCER_FIELD}.changed_at": {"lt": 5_000}}},
                ]
            }
        }
        assert search.count(index, tombstones) == 1
        hits = search.search(index, {"query": tombstones, "size": 10, "_source": False})
        assert [hit["_id"] for hit in hits] == [old]
        assert "_source" not in hits[0]
        body = {"query": {"match_all": {}}, "_source": {"excludes": [SYNCER_FIELD]}}
        pages = list(search.scroll(alias, body, 1))
        seen = {hit["_id"]: hit["_source"] for page in pages for hit in page}
        assert live in seen
        assert old not in seen
        assert young not in seen
        assert SYNCER_FIELD not in seen[live]


class ItemsScanContract:
    """The table's scans (reindex, verify): segments split the items, pages resume."""

    def test_segments_hold_every_item_once_and_pages_resume(self, items, table, put_item) -> None:
        """Two segments together give each item once; a page's last key resumes after it."""
        pk = f"s-{uuid.uuid4().hex[:8]}"
        for n in range(5):
            put_item({"pk": {"S": pk}, "sk": {"S": f"v{n}"}, "n": {"N": str(n)}})
        seen = [
            item["sk"]["S"]
            for segment in (0, 1)
            for page in items.scan(table, segment=segment, total_segments=2, page_size=2)
            for item in page.items
            if item["pk"]["S"] == pk
        ]
        assert sorted(seen) == [f"v{n}" for n in range(5)]
        first = next(iter(items.scan(table, page_size=2)))
        assert len(first.items) == 2
        assert first.last_key is not None
        assert first.version.is_read
        rest = [
            item["sk"]["S"]
            for page in items.scan(table, start_key=first.last_key, page_size=2)
            for item in page.items
        ]
        assert sorted(rest + [item["sk"]["S"] for item in first.items]) == sorted(seen)


class JobsContract:
    """The rebuild jobs' records: created once, every later write conditional on the state read."""

    def test_a_record_is_created_once_and_changed_only_from_what_was_read(self, jobs) -> None:
        """A second create, or a write from a stale read, is a conflict; ``update`` wins."""
        from syncer.core.jobs import Job
        from syncer.sinks.jobs import JobConflictError

        table = f"t-{uuid.uuid4().hex[:8]}"
        job = Job(table, table, "scan", "me", 1, "prepare", 1.0, 1.0, segments=2)
        assert jobs.get(table) is None
        first = jobs.put(job, None)
        assert jobs.get(table).job == job
        with pytest.raises(JobConflictError):
            jobs.put(job, None)
        moved = jobs.put(dataclasses.replace(job, phase="load"), first)
        with pytest.raises(JobConflictError):
            jobs.put(dataclasses.replace(job, phase="settle"), first)
        assert jobs.get(table).job.phase == "load"
        assert moved.seq_no != first.seq_no
        done = jobs.update(table, lambda current: dataclasses.replace(current.job, phase="done"))
        assert done.job.phase == "done"
        assert jobs.get(table).job.phase == "done"
        assert table in [j.table for j in jobs.all()]
