"""What ``syncer run`` follows: each table's DynamoDB stream, or the Kinesis stream it names (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncer.config import Config
from syncer.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Sources:
    """The streams a run reads."""

    tables: tuple[str, ...]  # tables followed through their DynamoDB streams
    kinesis_streams: tuple[str, ...]  # Kinesis streams, by name or ARN, each once


def choose_sources(
    config: Config,
    tables: Sequence[str] = (),
    kinesis_streams: Sequence[str] = (),
    replay: bool = False,
) -> Sources:
    """The streams to read: each chosen table's (its ``kinesis_stream`` when it names one, else
    its DynamoDB stream), and the Kinesis streams given.

    Without ``tables`` every configured table is chosen, unless Kinesis streams are given: then
    only those. A replay (``--from``) reads Kinesis only, and says so for a table that is not.
    """
    configured = [table.name for table in config.tables]
    unknown = sorted(set(tables) - set(configured))
    if unknown:
        raise ConfigError(
            f"table {unknown[0]!r} is not configured; configured: {', '.join(configured)}"
        )
    chosen = list(dict.fromkeys(tables)) or ([] if kinesis_streams else configured)
    kinesis = list(kinesis_streams)
    dynamodb: list[str] = []
    for name in chosen:
        stream = config.require_table(name).kinesis_stream
        if stream:
            kinesis.append(stream)
        else:
            dynamodb.append(name)
    if replay and dynamodb:
        raise ConfigError(
            f"--from/--until replay a Kinesis stream, but table {dynamodb[0]!r} is followed "
            "through its DynamoDB stream, which keeps 24 hours and cannot start at a time (no "
            "AT_TIMESTAMP); set kinesis_stream for it in the configuration, or pass "
            "--kinesis-stream; to repair a DynamoDB Streams table use syncer verify --repair "
            "or syncer reindex"
        )
    return Sources(tuple(dynamodb), tuple(dict.fromkeys(kinesis)))
