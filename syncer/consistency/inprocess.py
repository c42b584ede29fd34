"""``syncer run``'s checker: sampled keys wait in memory and are checked on a thread of their own.

The poller hands each batch outcome to ``observe_batch``, which only samples and queues (no
I/O), so the shards never wait for a check. At most ``max_pending`` checks wait; beyond that a
sample is counted as dropped. Checks still waiting when the run stops are not done (counted).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from syncer.config import Config
from syncer.consistency.check import run_checks, sample_batch
from syncer.consistency.report import log_violations, tally
from syncer.core.consistency import SampledWrite
from syncer.core.outcome import BatchOutcome
from syncer.sinks.ports import Sinks

log = logging.getLogger("syncer.consistency")

CHECKS_PER_ROUND = 100  # one BatchGetItem, one _mget, one Redis pipeline per round


class InProcessChecker:
    """Schedules each sampled key ``check_after_s`` ahead and checks it on a daemon thread."""

    def __init__(
        self,
        config: Config,
        sinks: Sinks,
        observe: Callable[[dict[str, int]], None] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sinks = sinks  # not closed here: the caller owns them
        self.observe = observe
        self.rng = rng or random.Random()
        self.clock = clock
        self.totals: Counter[str] = Counter()
        self._due: list[tuple[float, int, SampledWrite]] = []
        self._order = itertools.count()
        self._busy = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="syncer-consistency", daemon=True)
        self._thread.start()

    def observe_batch(self, outcome: BatchOutcome) -> None:
        """Sample the batch's written keys and queue their checks; never raises into the poller."""
        try:
            samples = sample_batch(outcome.written, self.config, self.rng)
        except Exception:  # a check is never worth a shard: counted and logged
            log.exception("consistency sampling failed; the batch is unaffected")
            self._count({"schedule_failures": 1})
            return
        self.submit(samples)

    def submit(self, samples: Sequence[SampledWrite]) -> None:
        due = self.clock() + self.config.consistency.check_after_s
        with self._cond:
            room = self.config.consistency.max_pending - len(self._due) - self._busy
            kept, dropped = samples[: max(0, room)], len(samples) - max(0, room)
            for sample in kept:
                heapq.heappush(self._due, (due, next(self._order), sample))
            self._cond.notify()
        if dropped > 0:
            log.warning(
                "%d consistency checks dropped: %d are pending ([consistency] max_pending)",
                dropped,
                self.config.consistency.max_pending,
            )
            self._count({"dropped": dropped})

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + self._busy

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no check is pending (tests and bench); False if some still were."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while self._due or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, wait_s: float = 0.0) -> None:
        """Stop after up to ``wait_s`` for pending checks; those left are counted as dropped."""
        if wait_s > 0:
            self.wait_idle(wait_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        with self._cond:
            left, self._due = len(self._due), []
        if left:
            log.info("%d consistency checks not done: the run stopped before they were due", left)
            self._count({"dropped": left})

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._ready():
                    timeout = self._due[0][0] - self.clock() if self._due else None
                    self._cond.wait(timeout if timeout is None else max(0.0, timeout))
                if self._stopping:
                    return
                now, batch = self.clock(), list[SampledWrite]()
                while self._due and len(batch) < CHECKS_PER_ROUND and self._due[0][0] <= now:
                    batch.append(heapq.heappop(self._due)[2])
                self._busy = len(batch)
            self._check(batch)
            with self._cond:
                self._busy = 0
                self._cond.notify_all()

    def _ready(self) -> bool:
        return bool(self._due) and self._due[0][0] <= self.clock()

    def _check(self, batch: Sequence[SampledWrite]) -> None:
        try:
            results = run_checks(batch, self.config, self.sinks)
        except Exception:  # counted and logged; the stream is unaffected
            log.exception("%d consistency checks could not be done", len(batch))
            self._count({"errors": len(batch)})
            return
        log_violations(results)
        self._count(tally(results))

    def _count(self, counts: dict[str, int]) -> None:
        with self._cond:
            self.totals.update(counts)
        if self.observe is not None:
            self.observe(counts)
