"""The one exception hierarchy of syncer; per-item failures are values, not exceptions.

Each sink raises its own subclass of ``DownstreamUnavailableError`` for failures it detects
itself; ``syncer.sinks.resilience.classify`` sorts these and the client libraries' own errors into
one table (docs/operations.md, "How failures are handled"). An exception that is neither is a bug: it fails the invocation.
"""

from __future__ import annotations


class SyncerError(Exception):
    """Root of every error syncer raises on purpose."""


class ConfigError(SyncerError):
    """The configuration is missing, malformed or names something that does not exist."""


class InvalidEventError(SyncerError):
    """The whole Lambda event is not a DynamoDB Streams batch; nothing was applied."""


class PoisonRecordError(SyncerError):
    """One record can never succeed (bad shape, unknown table, ...); it goes to the dead letters."""


class DownstreamUnavailableError(SyncerError):
    """OpenSearch, Redis, DynamoDB or the dead letters did not answer well enough; retried."""


class SearchUnavailableError(DownstreamUnavailableError):
    """OpenSearch answered, but not with what a write needs (a missing index, a short reply)."""


class CacheUnavailableError(DownstreamUnavailableError):
    """Redis (or a node of a Redis Cluster) did not confirm an invalidation."""


class TableReadError(DownstreamUnavailableError):
    """DynamoDB did not return items that a batch had to read."""


class DeadLetterUnavailableError(DownstreamUnavailableError):
    """A dead-letter destination did not accept every letter."""


class DeadlineExceededError(DownstreamUnavailableError):
    """Too little of the invocation's time is left to start another request."""


class BatchFailedError(SyncerError):
    """Every record of a batch failed: the invocation fails, so the errors alarm fires."""


class PurgeRefusedError(SyncerError):
    """Purging tombstones would be unsafe now (a reindex runs, or the age is below the minimum)."""


class PendingItemsError(Exception):
    """Some items of a request hit a transient error; the round is retried for them.

    Not a ``SyncerError``: it never leaves the retry loop that raised it
    (``syncer.sinks.resilience.classify`` counts it transient)."""

    def __init__(self, count: int, reason: str) -> None:
        super().__init__(f"{count} item(s) still pending: {reason}")
        self.reason = reason
