"""``run_poller``: ``syncer run``'s wiring around ``StreamPoller``: clients, sinks and the
checkpoint store from the config, the consistency checker, metrics and health over HTTP,
stopping on SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from syncer.config import Config
from syncer.consistency.inprocess import InProcessChecker
from syncer.core.outcome import BatchOutcome
from syncer.errors import ConfigError
from syncer.runner.poller import PollOptions, StreamPoller
from syncer.runner.report import RunSummary
from syncer.runner.sources import choose_sources
from syncer.runner.window import ReplayWindow
from syncer.sinks.build import aws_client, build_sinks
from syncer.sinks.checkpoints import CheckpointStore, FileCheckpointStore, open_checkpoint_store

log = logging.getLogger("syncer.runner.poller")  # the name logs and log assertions know


@contextlib.contextmanager
def stop_on_signals(poller: StreamPoller) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM ask ``poller`` to stop after its current batch.

    A second signal gets the previous handling back (SIGINT: KeyboardInterrupt; SIGTERM: exit),
    so a batch stuck in retries can still be cut short.
    """

    def request_stop(signum: int, frame: object) -> None:
        poller.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def replay_store(store: CheckpointStore, replay: ReplayWindow) -> CheckpointStore:
    """Where a replay keeps its checkpoints: a file of its own beside a checkpoint file.

    A checkpoint file belongs to one process, which reads it once and rewrites it whole: a
    replay running beside the stream's worker on the same file would put the worker's
    checkpoints back to what they were when the replay started, and lose its own at the
    worker's next save. A Redis hash is written field by field, so both share it safely.
    """
    if not isinstance(store, FileCheckpointStore):
        return store
    digest = hashlib.sha256(replay.checkpoint_key("").encode()).hexdigest()[:12]
    path = store.path
    return FileCheckpointStore(path.with_name(f"{path.stem}.replay-{digest}{path.suffix}"))


def _remove_if_empty(store: FileCheckpointStore) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError):  # corrupt: left for a look
        if json.loads(store.path.read_text(encoding="utf-8")) == {}:
            store.path.unlink()


def _tell_all(observers: Sequence[Callable[[BatchOutcome], None]], outcome: BatchOutcome) -> None:
    for observe in observers:
        observe(outcome)


def _consistency_checker(config: Config) -> InProcessChecker | None:
    """The in-process checker of ``[consistency]`` with clients of its own; None when off."""
    if not config.consistency.enabled(in_lambda=False):
        return None
    log.info(
        "consistency checks: %g of written keys, %g s after their batch",
        config.consistency.sample_rate,
        config.consistency.check_after_s,
    )
    # Clients and guards of its own: the batches' retry and breaker figures stay their own.
    return InProcessChecker(config, build_sinks(config))


def run_poller(
    config: Config,
    options: PollOptions | None = None,
    *,
    tables: Sequence[str] = (),
    checkpoint_file: str | None = None,
    streams: Any | None = None,
    handle_signals: bool = False,
    metrics_port: int | None = None,
    kinesis_streams: Sequence[str] = (),
    replay: ReplayWindow | None = None,
    kinesis: Any | None = None,
) -> RunSummary:
    """Build clients, sinks and the checkpoint store from ``config`` and run the poller.

    ``streams`` and ``kinesis`` replace the DynamoDB Streams and Kinesis clients (tests wrap the
    real ones to inject faults); ``checkpoint_file`` overrides ``[checkpoints]``.
    ``metrics_port`` serves ``/metrics`` (Prometheus) and ``/healthz`` on loopback while the
    poller runs. ``kinesis_streams`` and ``replay``: see ``StreamPoller``.
    """
    sources = choose_sources(config, tables, kinesis_streams, replay is not None)
    sinks = build_sinks(config)
    dynamodb = sinks.dynamodb if sinks.dynamodb is not None else aws_client("dynamodb")
    if kinesis is None and sources.kinesis_streams:
        kinesis = aws_client("kinesis")
    store = open_checkpoint_store(config.checkpoints, sinks.redis, checkpoint_file)
    if replay is not None:
        store = replay_store(store, replay)
    poller = StreamPoller(
        config,
        sinks,
        streams if streams is not None else aws_client("dynamodbstreams"),
        dynamodb,
        store,
        options,
        tables,
        kinesis=kinesis,
        kinesis_streams=kinesis_streams,
        replay=replay,
    )
    server = None
    checker = _consistency_checker(config)
    observers = [checker.observe_batch] if checker is not None else []
    poller.on_batch = functools.partial(_tell_all, observers)
    if metrics_port is not None:
        from syncer.obs.metrics import PrometheusMetrics, serve_http

        metrics = PrometheusMetrics()
        observers.insert(0, metrics.observe)
        if checker is not None:
            from syncer.consistency.report import ConsistencyMetrics

            checker.observe = ConsistencyMetrics(metrics.registry).observe
        try:
            server = serve_http(metrics, poller.health, metrics_port)
        except OSError as error:
            raise ConfigError(
                f"cannot serve metrics on 127.0.0.1:{metrics_port} ({error}); "
                "choose another --metrics-port, or 0 to turn it off"
            ) from None
        log.info(
            "metrics on http://127.0.0.1:%d/metrics, health on /healthz", server.server_address[1]
        )
    try:
        if not handle_signals:
            summary = poller.run()
        else:
            with stop_on_signals(poller):
                summary = poller.run()
        if replay is not None and isinstance(store, FileCheckpointStore):
            _remove_if_empty(store)  # the replay ended: its file has nothing left to resume
        return summary
    finally:
        if checker is not None:  # --once waits for the checks of what it wrote
            checker.close(
                wait_s=config.consistency.check_after_s + 10 if poller.summary.caught_up else 0
            )
            checker.sinks.close()
        if server is not None:
            server.shutdown()
            server.server_close()
