"""The one exception hierarchy of syncer; per-item failures are values, not exceptions."""

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
    """OpenSearch, Redis or DynamoDB did not answer in time; the records will be retried."""


class DeadLetterUnavailableError(DownstreamUnavailableError):
    """The dead-letter destination did not take every entry; the records will be retried."""


class PurgeRefusedError(SyncerError):
    """Purging tombstones would be unsafe now (a reindex runs, or the age is below the minimum)."""
