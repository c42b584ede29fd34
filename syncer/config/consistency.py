"""``[consistency]``: the share of written keys to check, when, and where Lambda queues checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from syncer.errors import ConfigError

# SQS's DelaySeconds ceiling: a check cannot be scheduled later than this through the queue.
MAX_CHECK_AFTER_S = 900


@dataclass(frozen=True, slots=True)
class ConsistencyConfig:
    """The consistency sampler (docs/consistency.md).

    ``sample_rate`` of the keys each batch wrote are checked ``check_after_s`` later (longer than
    the index's refresh interval). ``syncer run`` checks in process; in Lambda the checks go
    through the SQS queue ``queue_url`` (with DelaySeconds) to the checker function, and without
    a queue Lambda checks nothing.
    """

    sample_rate: float = 0.01
    check_after_s: float = 5.0
    queue_url: str | None = None
    max_pending: int = 10_000  # checks ``syncer run`` holds at most; more are counted, not kept

    def enabled(self, in_lambda: bool) -> bool:
        """Whether batches are sampled: a positive rate, and in Lambda a queue to send to."""
        return self.sample_rate > 0 and (self.queue_url is not None or not in_lambda)


_KEYS = {"sample_rate", "check_after_s", "queue_url", "max_pending"}


def parse_consistency(raw: object) -> ConsistencyConfig:
    """``[consistency]`` checked (``SYNCER_CONSISTENCY_QUEUE_URL`` has set the queue by now)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("[consistency] must be a table of keys")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key consistency.{unknown[0]} in the configuration; "
            f"known keys of [consistency]: {', '.join(sorted(_KEYS))}"
        )
    defaults = ConsistencyConfig()
    rate = _number(raw, "sample_rate", defaults.sample_rate)
    if not 0 <= rate <= 1:
        raise ConfigError(f"consistency.sample_rate must be 0 to 1, got {rate!r}")
    after = _number(raw, "check_after_s", defaults.check_after_s)
    if not 0 < after <= MAX_CHECK_AFTER_S:
        raise ConfigError(
            f"consistency.check_after_s must be more than 0 and at most {MAX_CHECK_AFTER_S} "
            f"(SQS's longest DelaySeconds), got {after!r}"
        )
    pending = raw.get("max_pending", defaults.max_pending)
    if not isinstance(pending, int) or isinstance(pending, bool) or pending < 1:
        raise ConfigError(f"consistency.max_pending must be a whole number >= 1, got {pending!r}")
    queue_url = raw.get("queue_url")
    if queue_url is not None and (not isinstance(queue_url, str) or not queue_url):
        raise ConfigError("consistency.queue_url must be a non-empty string (an SQS queue URL)")
    return ConsistencyConfig(float(rate), float(after), queue_url, pending)


def _number(raw: Mapping[str, object], key: str, default: float) -> float:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"consistency.{key} must be a finite number, got {value!r:.40}")
    return float(value)
