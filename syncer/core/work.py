"""One key's work through a batch, in one record (pure).

``process_batch`` builds a ``KeyWork`` per key when the batch is coalesced, and its stages fill
it in order: the item read (or why it could not be), the route its state selects, the outcome of
each of its documents, the cache keys it invalidates. What the batch reports of a key (settled,
unrouted, the written key the consistency sampler picks from) is read off the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from syncer.config import Route, TableConfig
from syncer.config.names import reindex_alias
from syncer.core.bodies import change_state
from syncer.core.coalesce import KeyChange
from syncer.core.consistency import WrittenKey
from syncer.core.documents import DocumentRef, IndexedDocument, Settled
from syncer.core.outcome import KeyStages, worst
from syncer.core.routes import Routed, document_in, route_item
from syncer.core.writes import RefOutcome

Image = Mapping[str, Any]


def target_refs(change: KeyChange, table: TableConfig) -> tuple[DocumentRef, ...]:
    """Where a change is written: each route's alias, and its reindex alias.

    A table without routes has one: its own index. A change goes to every route's index, a
    document where its state belongs and a tombstone elsewhere (docs/routes.md).
    """
    doc_id = change.document_id
    return tuple(
        ref
        for route in table.resolved_routes
        for ref in ((route.index, doc_id), (reindex_alias(route.index), doc_id))
    )


@dataclass(slots=True, eq=False)
class KeyWork:
    """Everything a batch knows and did about one key, filled stage by stage.

    ``change`` and ``refs`` are set when the batch is coalesced; ``item``/``read_error`` by
    the item read (streams without a new image), ``routed`` by routing, ``outcomes`` and
    ``indexed`` by the search write, ``cache_keys`` by the invalidation.
    """

    change: KeyChange
    table: TableConfig
    refs: tuple[DocumentRef, ...]
    item: Image | None = None  # the item read from the table; None: gone (or not read)
    item_read: bool = False
    read_error: str | None = None  # why the item could not be read: the key is retried
    routed: Routed | None = None  # the route the key's state selects and its document there
    # Made on first use: a batch of 10,000 keys would otherwise carry 20,000 empty containers.
    outcomes: dict[DocumentRef, RefOutcome] | None = None
    indexed: list[tuple[Route, Image]] | None = None  # documents found in a route's index
    cache_keys: frozenset[str] = frozenset()

    @classmethod
    def start(cls, change: KeyChange, table: TableConfig) -> KeyWork:
        return cls(change, table, target_refs(change, table))

    @property
    def home(self) -> DocumentRef:
        """The change's first target: where its counts and its cache keys are filed."""
        return self.refs[0]

    @property
    def needs_item(self) -> bool:
        """The stream carries no new image (KEYS_ONLY, OLD_IMAGE): the table must be read."""
        return self.change.latest.needs_item_lookup

    @property
    def searchable(self) -> bool:
        """Its state is known: the stream carried it, or the item was read."""
        return self.read_error is None

    @property
    def state(self) -> Image | None:
        """The item as the change leaves it: its new image, or the item read; None when gone."""
        if self.needs_item and not self.item_read:
            return change_state(self.change)  # a bug: the item should have been read; it says so
        return change_state(self.change, self.item)

    def route(self) -> Routed:
        """Route (and transform) the key's state, once."""
        if self.routed is None:
            self.routed = route_item(self.table, self.state)
        return self.routed

    def settle(self, ref: DocumentRef, outcome: RefOutcome) -> None:
        """Keep how the write of one of its documents ended."""
        if self.outcomes is None:
            self.outcomes = {}
        self.outcomes[ref] = outcome

    def observe(self, ref: DocumentRef, document: IndexedDocument) -> None:
        """Keep a document the write found in a route's index (its cache keys are cleared)."""
        for route in self.table.resolved_routes:
            if route.index == ref[0]:
                if self.indexed is None:
                    self.indexed = []
                self.indexed.append((route, document.fields))

    @property
    def unrouted(self) -> bool:
        """An item of a routed table that exists but no route selects: skipped, acknowledged."""
        routed = self.routed
        return routed is not None and routed.route is None and self.state is not None

    @property
    def search_status(self) -> Settled | None:
        """The worst outcome over its documents; None when not attempted (read failed)."""
        if not self.searchable:
            return None
        return worst([self._status(ref) for ref in self.refs])

    def stages(self, cache_failed: bool) -> KeyStages:
        return KeyStages(
            lookup_failed=not self.searchable, search=self.search_status, cache_failed=cache_failed
        )

    @property
    def rejected_reason(self) -> str | None:
        """OpenSearch's (or the planner's) words for the first document refused, if any."""
        outcomes = self.outcomes or {}
        return next(
            (outcomes[r].reason for r in self.refs if self._status(r) is Settled.REJECTED), None
        )

    @property
    def settled(self) -> Settled | None:
        """How the change ended for the counts: in the index of the route its state selects."""
        if self.unrouted:
            return None
        routed = self.routed
        if routed is None or routed.route is None:
            return self._status(self.home)
        return self._status((routed.route.index, self.change.document_id))

    def written_key(self) -> WrittenKey | None:
        """The key as written or tombstoned, with the version and state its write carried."""
        status = self.settled
        if status not in (Settled.WRITTEN, Settled.TOMBSTONED):
            return None
        index = self.home[0]
        document = self.state
        routed = self.routed
        if routed is not None and routed.route is not None:
            index, document = routed.route.index, document_in(routed, routed.route)
        latest = self.change.latest
        return WrittenKey(
            self.change.table,
            index,
            self.change.document_id,
            latest.typed_keys,
            latest.version,
            document if status is Settled.WRITTEN else None,
            tuple(sorted(self.cache_keys)),
        )

    def _status(self, ref: DocumentRef) -> Settled | None:
        outcome = None if self.outcomes is None else self.outcomes.get(ref)
        return None if outcome is None else outcome.status


class WrittenKeys(Sequence[WrittenKey]):
    """The keys a batch wrote or tombstoned, each ``WrittenKey`` built only when it is read.

    The consistency sampler reads a few of them (``[consistency] sample_rate``, 1% by default),
    by position; building all of them cost about as much as planning the batch's cache keys.
    The works are settled when this is made and nothing changes them afterwards.
    """

    __slots__ = ("_works",)

    def __init__(self, works: Iterable[KeyWork]) -> None:
        self._works = tuple(works)

    def __len__(self) -> int:
        return len(self._works)

    @overload
    def __getitem__(self, position: int) -> WrittenKey: ...

    @overload
    def __getitem__(self, position: slice) -> Sequence[WrittenKey]: ...

    def __getitem__(self, position: int | slice) -> WrittenKey | Sequence[WrittenKey]:
        if isinstance(position, slice):
            return WrittenKeys(self._works[position])
        key = self._works[position].written_key()
        if key is None:  # only settled works are kept: a bug if one is not
            raise ValueError(f"key {self._works[position].change.document_id!r} was not written")
        return key

    def __repr__(self) -> str:
        return f"WrittenKeys({len(self._works)} keys)"
