"""syncer's record processor for KCL 3's MultiLangDaemon (amazon-kclpy, v3 interface).

The daemon runs one process per shard lease (``python -m syncer.runner.kcl``, written into the
properties by ``syncer kcl-worker``) and talks to it over stdin/stdout. Each batch it delivers
becomes the Lambda-shaped Kinesis records ``lambda_handler`` gets and runs through the same
``process_batch``. The rules (docs/deploy.md, "A fleet on KCL"):

- a checkpoint never passes a record that is neither durable nor dead-lettered: it is saved at
  the record before the first one ``process_batch`` reported failed;
- a failed record is retried here, from the first failure, with ``[resilience]``'s backoff,
  until it succeeds, the lease is lost or shutdown is requested; it is never skipped. (Returning
  from ``process_records`` with records unhandled would skip them: KCL delivers the next batch
  from where the last one ended, not from the checkpoint.) Once this processor gave up on a
  record it saves no checkpoint again, and exits if KCL goes on delivering. A lost lease shows
  only as a refused checkpoint, so a batch that never succeeds may be retried after another
  worker took the shard: both apply the same records, which the order rules make harmless;
- ``lease_lost`` never checkpoints; ``shard_ended`` checkpoints with no argument, as KCL
  requires, unless a record was given up on; ``shutdown_requested`` saves what is durable.

amazon-kclpy swallows any exception a processor raises and carries on with the next batch, so a
bug here must not raise one: it exits the process instead, and the daemon exits with it (the
fleet's orchestrator restarts the worker, which resumes from the last checkpoint).

Only ``syncer kcl-worker`` and the daemon import this module (the ``syncer[kcl]`` extra): the
Lambda function never does.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

from syncer.config import Config, load_config
from syncer.core.outcome import BatchOutcome
from syncer.errors import DownstreamUnavailableError
from syncer.pipeline import cyclic_gc_paused
from syncer.runner.kinesisrecords import lambda_kinesis_record
from syncer.runner.reader import backoff_s
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Downstream

log = logging.getLogger("syncer.runner.kcl")  # also when run as __main__

# What the MultiLangDaemon answers a checkpoint with, by the name of KCL's exception
# (software.amazon.kinesis.exceptions): amazon-kclpy raises CheckpointError(name).
LEASE_LOST = "ShutdownException"  # the lease is gone: another worker owns the shard now
# Not saved this time; the next checkpoint covers these records. Until then they would be
# delivered again after a failover, which is harmless: syncer's order rules skip what is stale.
CHECKPOINT_LATER = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})
# Anything else (InvalidStateException: the lease table is gone or unreadable;
# IllegalArgumentException: a sequence number outside the batch) leaves this worker in a state
# nothing here can repair: the process exits, and the daemon with it.
EXIT_FATAL = 70  # EX_SOFTWARE


class Checkpointer(Protocol):
    """amazon-kclpy's checkpointer: saves a position, or raises ``CheckpointError(name)``."""

    def checkpoint(
        self, sequence_number: str | None = None, sub_sequence_number: int | None = None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Position:
    """A record's place in its shard: KCL checkpoints (sequence number, sub-sequence number)."""

    sequence_number: str
    sub_sequence_number: int = 0

    def __str__(self) -> str:
        if self.sub_sequence_number:
            return f"{self.sequence_number}/{self.sub_sequence_number}"
        return self.sequence_number


def handled_prefix(sequence_numbers: Sequence[str], failed: Collection[str]) -> int:
    """How many records, from the first, were handled: those before the first failed one."""
    for count, number in enumerate(sequence_numbers):
        if number in failed:
            return count
    return len(sequence_numbers)


class FatalCheckpointError(RuntimeError):
    """The daemon refused a checkpoint for a reason that retrying cannot fix."""


class SyncerRecordProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    """One shard's processor: ``process_batch`` on each batch, checkpoints of what is handled.

    ``process`` runs one batch of Lambda-shaped records; ``backoff_s(n)`` is the wait after the
    n-th failed attempt in a row; ``stop`` is set when the worker is asked to stop (SIGTERM),
    and ends a retry early.
    """

    def __init__(
        self,
        process: Callable[[list[dict[str, Any]]], BatchOutcome],
        stream_arn: str,
        backoff_s: Callable[[int], float],
        stop: threading.Event,
    ) -> None:
        self.process = process
        self.stream_arn = stream_arn
        self.backoff_s = backoff_s
        self.stop = stop
        self.shard_id = "?"
        self.checkpointed: Position | None = None  # the lease table's, as last known
        self.handled: Position | None = None  # the last record handled, all before it too
        self.gave_up: str | None = None  # why records were left unhandled: no checkpoint after

    # -- KCL's callbacks. Each turns a bug into an exit (see the module's docstring).

    def initialize(self, initialize_input: Any) -> None:
        with _exit_on_bug("initialize"):
            self.shard_id = initialize_input.shard_id
            # The lease's checkpoint: a sequence number, or TRIM_HORIZON, LATEST, ... at first.
            self.checkpointed = Position(
                str(initialize_input.sequence_number), initialize_input.sub_sequence_number or 0
            )
            log.info("shard %s: processing after checkpoint %s", self.shard_id, self.checkpointed)

    def process_records(self, process_records_input: Any) -> None:
        with _exit_on_bug(f"shard {self.shard_id}: process_records"):
            records = process_records_input.records
            if not records:
                return
            if self.gave_up is not None:
                # KCL only goes on delivering if the worker was not shutting down after all;
                # checkpointing these would pass the records left unhandled. Start again from
                # the checkpoint instead, in a new worker.
                log.critical(
                    "shard %s: records delivered after this processor left records unhandled "
                    "(%s); exiting so the shard restarts from its checkpoint %s",
                    self.shard_id,
                    self.gave_up,
                    self.checkpointed,
                )
                raise SystemExit(EXIT_FATAL)
            self._handle(records, process_records_input.checkpointer)

    def lease_lost(self, lease_lost_input: Any) -> None:
        with _exit_on_bug(f"shard {self.shard_id}: lease_lost"):
            # Another worker owns the shard: checkpointing is impossible, and not ours to do.
            log.info(
                "shard %s: lease lost; the new owner resumes after checkpoint %s",
                self.shard_id,
                self.checkpointed,
            )

    def shard_ended(self, shard_ended_input: Any) -> None:
        with _exit_on_bug(f"shard {self.shard_id}: shard_ended"):
            if self.gave_up is not None:
                log.error(
                    "shard %s ended, but records were left unhandled (%s): no end-of-shard "
                    "checkpoint; the shard is processed again from checkpoint %s",
                    self.shard_id,
                    self.gave_up,
                    self.checkpointed,
                )
                return
            # Every record of the shard was handled (process_records returns only then): KCL
            # needs this checkpoint, with no argument, before it starts the child shards.
            if self._checkpoint(shard_ended_input.checkpointer, None):
                log.info("shard %s ended: checkpointed at its end", self.shard_id)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        with _exit_on_bug(f"shard {self.shard_id}: shutdown_requested"):
            handled = self.handled
            if handled is None or handled == self.checkpointed:
                log.info("shard %s: shutdown requested; checkpoint %s", self.shard_id, handled)
                return
            if self._checkpoint(shutdown_requested_input.checkpointer, handled):
                log.info("shard %s: shutdown requested; checkpointed %s", self.shard_id, handled)

    # -- The work.

    def _handle(self, records: Sequence[Any], checkpointer: Checkpointer) -> None:
        """Run the batch until every record is handled, or this processor must stop."""
        pending = [
            (Position(r.sequence_number, r.sub_sequence_number or 0), self._shaped(r))
            for r in records
        ]
        failures = 0
        while True:
            # As in the Lambda handler, the collector stays off until the batch's values are
            # freed (when ``_run`` returns), and not through the wait before a retry.
            with cyclic_gc_paused():
                failed, reason = self._run(pending)
            count = handled_prefix([p.sequence_number for p, _ in pending], failed)
            if count:
                self.handled = pending[count - 1][0]
                if not self._checkpoint(checkpointer, self.handled):
                    return  # the lease is lost: the new owner starts after the checkpoint
            if count == len(pending):
                log.info(
                    "shard %s: %d records %s..%s handled; checkpoint %s",
                    self.shard_id,
                    len(records),
                    records[0].sequence_number,
                    records[-1].sequence_number,
                    self.checkpointed,
                )
                return
            pending = pending[count:]
            failures += 1
            delay = self.backoff_s(failures)
            log.warning(
                "shard %s: %s; checkpoint stays at %s; retrying from %s in %.2f s "
                "(failure %d in a row)",
                self.shard_id,
                reason,
                self.checkpointed,
                pending[0][0],
                delay,
                failures,
            )
            if self.stop.is_set() or self.stop.wait(delay):
                self.gave_up = f"shutdown requested while record {pending[0][0]} kept failing"
                log.warning(
                    "shard %s: %s; it was not checkpointed, and is delivered again from "
                    "checkpoint %s",
                    self.shard_id,
                    self.gave_up,
                    self.checkpointed,
                )
                return

    def _run(self, pending: Sequence[tuple[Position, dict[str, Any]]]) -> tuple[set[str], str]:
        """The sequence numbers that failed, and why; every one when the batch failed whole."""
        try:
            outcome = self.process([record for _, record in pending])
        except DownstreamUnavailableError as error:  # process_batch's only deliberate raise
            return {p.sequence_number for p, _ in pending}, f"the batch failed: {error}"
        failed = set(outcome.failed_sequence_numbers)
        return failed, f"{len(failed)} of {len(pending)} records failed (see above)"

    def _shaped(self, record: Any) -> dict[str, Any]:
        return lambda_kinesis_record(
            data_base64=record.data,
            sequence_number=record.sequence_number,
            partition_key=record.partition_key,
            arrival_s=record.timestamp_millis / 1000,
            stream_arn=self.stream_arn,
            shard_id=self.shard_id,
        )

    def _checkpoint(self, checkpointer: Checkpointer, position: Position | None) -> bool:
        """Save ``position`` (None: the shard's end); False when the lease is lost.

        A checkpoint the daemon asks to try later is left to the next one; any other refusal
        raises ``FatalCheckpointError``.
        """
        try:
            if position is None:
                checkpointer.checkpoint()
            else:
                checkpointer.checkpoint(position.sequence_number, position.sub_sequence_number)
        except kcl.CheckpointError as error:
            name = str(error.value)
            if name == LEASE_LOST:
                self.gave_up = "the lease was lost"
                log.info(
                    "shard %s: lease lost while checkpointing %s; checkpoint stays at %s",
                    self.shard_id,
                    position or "the shard's end",
                    self.checkpointed,
                )
                return False
            if name in CHECKPOINT_LATER:
                log.warning(
                    "shard %s: checkpoint at %s not saved (%s); the next one covers it, and "
                    "until then a new owner would deliver these records again (harmless)",
                    self.shard_id,
                    position or "the shard's end",
                    name,
                )
                return True
            raise FatalCheckpointError(
                f"the daemon refused the checkpoint at {position or 'the shard end'}: {name}"
            ) from None
        if position is not None:
            self.checkpointed = position
        return True


@contextlib.contextmanager
def _exit_on_bug(what: str) -> Iterator[None]:
    """Turn any exception into a logged exit: amazon-kclpy would swallow it and carry on."""
    try:
        yield
    except Exception as error:  # a bug: logged with its traceback, then the exit
        log.exception("%s failed; exiting: the shard restarts from its checkpoint", what)
        raise SystemExit(EXIT_FATAL) from error


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m syncer.runner.kcl",
        description="syncer's record processor, run by KCL's MultiLangDaemon (one per shard); "
        "`syncer kcl-worker` writes this command into the daemon's properties.",
    )
    parser.add_argument("--config", required=True, help="syncer's configuration file")
    parser.add_argument("--stream-arn", required=True, help="the Kinesis stream's ARN")
    return parser.parse_args(argv)


def build_processor(
    config: Config, stream_arn: str, stop: threading.Event
) -> tuple[SyncerRecordProcessor, Sinks]:
    """The processor and the sinks it writes to (closed by the caller), built from ``config``."""
    from syncer.pipeline import process_batch
    from syncer.sinks.build import build_sinks

    sinks = build_sinks(config)
    guard = Downstream("kcl", config.resilience)
    record_processor = SyncerRecordProcessor(
        lambda records: process_batch(records, config, sinks),
        stream_arn,
        lambda failures: backoff_s(guard, failures),
        stop,
    )
    return record_processor, sinks


def main(argv: Sequence[str] | None = None) -> int:
    """Run one shard's processor on stdin/stdout, as the MultiLangDaemon starts it."""
    from syncer.obs.logs import configure_logging

    args = _arguments(argv)
    # stdout carries the daemon's protocol: logs (and anything else printed) go to stderr,
    # which the daemon copies into its own log.
    protocol_out = sys.stdout
    sys.stdout = sys.stderr
    configure_logging(json_lines=False)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    config = load_config(args.config)
    record_processor, sinks = build_processor(config, args.stream_arn, stop)
    try:
        kcl.KCLProcess(record_processor, input_file=sys.stdin, output_file=protocol_out).run()
    finally:
        sinks.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
