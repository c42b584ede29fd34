"""Consistency checks, the pure part: which written keys to sample, and what a check found.

A check (docs/consistency.md) re-reads, some seconds after a batch, one key that the batch wrote:
the item (a consistent read), its document through the alias, and its cache keys. ``classify``
turns what it read into one index verdict and one cache verdict; every ordering question goes
through ``syncer.core.versions.compare``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from syncer.core.versions import Order, Version, compare, version_from_meta
from syncer.errors import PoisonRecordError

if TYPE_CHECKING:  # the pipeline imports this module; only samplers need random
    import random

MESSAGE_FORMAT = 1  # the "format" of a sampled write's message: a checker refuses others


class CheckKind(Enum):
    """What a check found for one key: ``ok``, ``superseded``, or a kind of violation."""

    OK = "ok"
    SUPERSEDED = "superseded"  # a newer change of the item since the sample: not a violation
    INDEX_MISSING = "index_missing"  # the item exists, search holds no live document
    INDEX_STALE = "index_stale"  # search holds an older version than syncer wrote
    INDEX_GHOST = "index_ghost"  # the item is gone, search still shows a document
    CONTENT_DIFFERS = "content_differs"  # same version, other content: changed behind syncer
    CACHE_STALE = "cache_stale"  # a cache key holds a value loaded before the change

    @property
    def is_violation(self) -> bool:
        return self not in (CheckKind.OK, CheckKind.SUPERSEDED)


VIOLATION_KINDS = tuple(kind for kind in CheckKind if kind.is_violation)


@dataclass(frozen=True, slots=True)
class WrittenKey:
    """A key whose change a batch settled in the index (written or tombstoned).

    ``document`` is the state the write put there before ``exclude_attributes`` (the item, or a
    routed table's transformed document); None for a tombstone. Nothing is computed from it
    unless the key is sampled.
    """

    table: str
    index: str  # the alias the document was written behind
    document_id: str
    keys: Mapping[str, Any]  # the key attributes, typed as in a stream record
    version: Version  # the change's version, which the write carried
    document: Mapping[str, Any] | None
    cache_keys: tuple[str, ...]  # the keys the batch invalidated for this change


def choose_samples(
    written: Sequence[WrittenKey], rate: float, rng: random.Random
) -> list[WrittenKey]:
    """Each written key with probability ``rate`` (0..1), independently.

    Chosen by position, so a lazy sequence (``core.work.WrittenKeys``) builds only the chosen.
    """
    if rate <= 0:
        return []
    if rate >= 1:
        return list(written)
    return [written[position] for position in range(len(written)) if rng.random() < rate]


@dataclass(frozen=True, slots=True)
class SampledWrite:
    """One sampled key, as scheduled for its check (in process, or as an SQS message)."""

    table: str
    index: str
    document_id: str
    keys: Mapping[str, Any]
    version: Version
    fingerprint: str | None  # the content syncer wrote (``content_fingerprint``); None: deleted
    cache_keys: tuple[str, ...]
    sampled_at_ms: int

    def to_message(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_message`` reads it back."""
        return {
            "format": MESSAGE_FORMAT,
            "table": self.table,
            "index": self.index,
            "id": self.document_id,
            "keys": dict(self.keys),
            "version": self.version.to_meta(),
            "fingerprint": self.fingerprint,
            "cache_keys": list(self.cache_keys),
            "sampled_at_ms": self.sampled_at_ms,
        }

    @classmethod
    def from_message(cls, message: object) -> SampledWrite:
        """A sampled write from ``to_message``'s dict; ``PoisonRecordError`` saying what is wrong."""
        if not isinstance(message, Mapping):
            raise PoisonRecordError("a consistency check message must be a JSON object")
        if message.get("format") != MESSAGE_FORMAT:
            raise PoisonRecordError(
                f"consistency check message format {message.get('format')!r} is not "
                f"{MESSAGE_FORMAT}"
            )
        texts = {name: message.get(name) for name in ("table", "index", "id")}
        missing = sorted(name for name, value in texts.items() if not isinstance(value, str))
        if missing or not isinstance(message.get("keys"), Mapping):
            raise PoisonRecordError(
                f"consistency check message lacks {', '.join(missing) or 'keys'}"
            )
        version, fingerprint = message.get("version"), message.get("fingerprint")
        cache_keys, sampled_at = message.get("cache_keys"), message.get("sampled_at_ms")
        if not isinstance(version, Mapping) or (
            version.get("seq") is None and version.get("change_from_us") is None
        ):
            raise PoisonRecordError(
                "consistency check message has no version of a change (a seq or a Kinesis time)"
            )
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise PoisonRecordError("consistency check message: fingerprint must be text")
        if not isinstance(cache_keys, list) or not all(isinstance(k, str) for k in cache_keys):
            raise PoisonRecordError("consistency check message: cache_keys must be texts")
        if not isinstance(sampled_at, int) or isinstance(sampled_at, bool):
            raise PoisonRecordError("consistency check message: sampled_at_ms must be a number")
        try:
            parsed = version_from_meta(version)
        except ValueError as error:
            raise PoisonRecordError(f"consistency check message: version: {error}") from None
        return cls(
            table=str(texts["table"]),
            index=str(texts["index"]),
            document_id=str(texts["id"]),
            keys=dict(message["keys"]),
            version=parsed,
            fingerprint=fingerprint,
            cache_keys=tuple(cache_keys),
            sampled_at_ms=sampled_at,
        )


@dataclass(frozen=True, slots=True)
class DocumentSeen:
    """The document a check found through the alias."""

    version: Version
    deleted: bool  # a tombstone
    fingerprint: str | None  # None for a tombstone


@dataclass(frozen=True, slots=True)
class CacheSeen:
    """A cache key that held a value when checked, and when that value's load began."""

    key: str
    loaded_at_ms: int | None  # None: a value without a fill time (written before envelopes)


@dataclass(frozen=True, slots=True)
class Observed:
    """What a check read for one sampled key."""

    item_fingerprint: str | None  # the item's content as its document would hold it; None: gone
    document: DocumentSeen | None  # None: no document behind the alias
    cache: tuple[CacheSeen, ...] = ()  # only keys that held a value


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A check's verdicts: one for the index, one for the cache."""

    sample: SampledWrite
    index: CheckKind
    cache: CheckKind
    indexed_version: Version | None
    stale_cache_keys: tuple[str, ...] = ()
    undated_cache_keys: int = 0  # values without a fill time: cannot be judged

    @property
    def violations(self) -> tuple[CheckKind, ...]:
        return tuple(kind for kind in (self.index, self.cache) if kind.is_violation)


def fill_version(loaded_at_ms: int) -> Version:
    """A cached value's version: a read of the table that began when its load began."""
    return Version(read_from_ms=loaded_at_ms, read_to_ms=loaded_at_ms + 1)


def classify(sample: SampledWrite, observed: Observed) -> CheckResult:
    """The index and cache verdicts of one check (a table test covers every branch).

    Superseded (a newer change since the sample: the document holds a newer version, or the
    item no longer holds what syncer wrote) is counted, not re-checked: the newer change is a
    candidate for its own sample. The cache is judged in any case: a value loaded before the
    sampled change should have been removed by that change's invalidation.
    """
    document = observed.document
    return CheckResult(
        sample=sample,
        index=_index_verdict(sample, observed),
        cache=CheckKind.CACHE_STALE if _stale_keys(sample, observed) else CheckKind.OK,
        indexed_version=document.version if document is not None else None,
        stale_cache_keys=_stale_keys(sample, observed),
        undated_cache_keys=sum(1 for seen in observed.cache if seen.loaded_at_ms is None),
    )


def _index_verdict(sample: SampledWrite, observed: Observed) -> CheckKind:
    document = observed.document
    live = document is not None and not document.deleted
    if document is not None and compare(document.version, sample.version) is Order.NEWER:
        return CheckKind.SUPERSEDED
    if observed.item_fingerprint != sample.fingerprint:
        return CheckKind.SUPERSEDED
    if sample.fingerprint is None:  # syncer wrote a tombstone, and the item is still gone
        return CheckKind.INDEX_GHOST if live else CheckKind.OK
    if document is None or not live:
        return CheckKind.INDEX_MISSING
    if compare(sample.version, document.version) is Order.NEWER:
        return CheckKind.INDEX_STALE
    if document.fingerprint != sample.fingerprint:
        return CheckKind.CONTENT_DIFFERS
    return CheckKind.OK


def _stale_keys(sample: SampledWrite, observed: Observed) -> tuple[str, ...]:
    return tuple(
        seen.key
        for seen in observed.cache
        if seen.loaded_at_ms is not None
        and compare(sample.version, fill_version(seen.loaded_at_ms)) is Order.NEWER
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0..1) of ``values``; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil without floats drifting past an index
    return ordered[min(len(ordered), int(rank)) - 1]
