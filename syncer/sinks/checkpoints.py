"""Where ``syncer run`` remembers each shard's position: a local JSON file or a Redis hash.

A checkpoint is the last sequence number whose batch was fully handled (durable or
dead-lettered), and whether the shard was read to its end. It is written only after the batch
succeeded, so a restart may redeliver records but never skips one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from syncer.config import CheckpointConfig
from syncer.errors import SyncerError


class CheckpointError(SyncerError):
    """A checkpoint could not be read (corrupt store) or saved."""


@dataclass(frozen=True, slots=True)
class ShardCheckpoint:
    """A shard's position: the last fully handled sequence number, and whether it is finished."""

    sequence_number: str | None
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"sequence_number": self.sequence_number, "finished": self.finished}

    @classmethod
    def from_json(cls, raw: object, where: str) -> ShardCheckpoint:
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"checkpoint {where} is not an object: {raw!r:.80}")
        sequence = raw.get("sequence_number")
        finished = raw.get("finished", False)
        if not (sequence is None or (isinstance(sequence, str) and sequence.isdigit())):
            raise CheckpointError(f"checkpoint {where} has a bad sequence_number: {sequence!r}")
        if not isinstance(finished, bool):
            raise CheckpointError(f"checkpoint {where} has a bad finished flag: {finished!r}")
        return cls(sequence, finished)


class CheckpointStore(Protocol):
    """Loads and saves shard checkpoints, keyed by stream ARN then shard id."""

    def load(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        """Every saved checkpoint of ``stream_arn``, by shard id."""
        ...

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        """Durably record ``checkpoint``; returns only once it would survive a crash."""
        ...

    def forget_others(self, stream_arn: str, keep: Collection[str]) -> list[str]:
        """Drop the checkpoints of ``stream_arn``'s shards not in ``keep``; their ids."""
        ...

    def describe(self) -> str:
        """Where the checkpoints live, for log lines."""
        ...


class FileCheckpointStore:
    """A JSON file ``{stream_arn: {shard_id: checkpoint}}``, replaced atomically on every save.

    One worker per file: the file is read once and then owned by this process.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._data: dict[str, dict[str, dict[str, Any]]] | None = None

    def describe(self) -> str:
        return f"file {self.path}"

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._data is None:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raw = {}
            except (OSError, ValueError) as error:
                raise CheckpointError(
                    f"checkpoint file {self.path} cannot be read ({error}); fix or remove it "
                    "(without it every shard starts again at TRIM_HORIZON)"
                ) from None
            if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
                raise CheckpointError(
                    f"checkpoint file {self.path} is not a {{stream ARN: {{shard id: ...}}}} object"
                )
            self._data = raw
        return self._data

    def load(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        shards = self._read().get(stream_arn, {})
        return {
            shard_id: ShardCheckpoint.from_json(raw, f"{self.path}: {stream_arn} {shard_id}")
            for shard_id, raw in shards.items()
        }

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        data = self._read()
        previous = data.get(stream_arn, {}).get(shard_id)
        data.setdefault(stream_arn, {})[shard_id] = checkpoint.to_json()
        try:
            self._write(data)
        except BaseException:
            # Memory must not claim what the disk does not hold.
            if previous is None:
                del data[stream_arn][shard_id]
            else:
                data[stream_arn][shard_id] = previous
            raise

    def forget_others(self, stream_arn: str, keep: Collection[str]) -> list[str]:
        data = self._read()
        shards = data.get(stream_arn, {})
        gone = sorted(shard_id for shard_id in shards if shard_id not in keep)
        if gone:
            kept = {k: v for k, v in shards.items() if k in keep}
            if kept:
                data[stream_arn] = kept
            else:  # a finished replay's key, or a stream with no shard left: no empty entry
                del data[stream_arn]
            try:
                self._write(data)
            except BaseException:
                data[stream_arn] = shards  # memory must not claim what the disk does not hold
                raise
        return gone

    def _write(self, data: dict[str, dict[str, dict[str, Any]]]) -> None:
        write_atomically(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, fsync, rename, fsync dir.

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed before the rename
        "w", encoding="utf-8", dir=directory, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # makes the rename itself durable
    finally:
        os.close(descriptor)


class RedisCheckpointStore:
    """A Redis hash at ``key``: field ``<stream ARN>|<shard id>``, value the checkpoint as JSON.

    ``|`` appears in neither an ARN nor a shard id. Durable as far as the Redis server's own
    persistence settings (AOF/RDB) make it. One key is one hash slot, so on a Redis Cluster
    every command goes to the one primary serving it (``client`` is ``cache.RedisHandle``).
    """

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    def describe(self) -> str:
        return f"redis hash {self.key}"

    def load(self, stream_arn: str) -> dict[str, ShardCheckpoint]:
        prefix = f"{stream_arn}|"
        found: dict[str, ShardCheckpoint] = {}
        for raw_field, raw_value in self.client.hgetall(self.key).items():
            field = _text(raw_field)
            if not field.startswith(prefix):
                continue
            shard_id = field[len(prefix) :]
            try:
                value = json.loads(_text(raw_value))
            except ValueError:
                raise CheckpointError(
                    f"redis hash {self.key} field {field} is not JSON: {raw_value!r:.80}"
                ) from None
            found[shard_id] = ShardCheckpoint.from_json(value, f"{self.key}: {field}")
        return found

    def save(self, stream_arn: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        self.client.hset(self.key, f"{stream_arn}|{shard_id}", json.dumps(checkpoint.to_json()))

    def forget_others(self, stream_arn: str, keep: Collection[str]) -> list[str]:
        gone = sorted(set(self.load(stream_arn)) - set(keep))
        if gone:
            self.client.hdel(self.key, *(f"{stream_arn}|{shard_id}" for shard_id in gone))
        return gone


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def open_checkpoint_store(
    settings: CheckpointConfig, redis_client: Any, file_override: str | None = None
) -> CheckpointStore:
    """The store the configuration names; an explicit ``--checkpoint-file`` wins over both."""
    if file_override:
        return FileCheckpointStore(file_override)
    if settings.redis_key:
        return RedisCheckpointStore(redis_client, settings.redis_key)
    return FileCheckpointStore(settings.file)
