"""A replay's window, ``syncer run --from TIME [--until TIME]`` on a Kinesis stream (pure).

The window is meant in the time of the changes (DynamoDB's clock); a shard is read in the
time its records reached Kinesis (``ApproximateArrivalTimestamp``, Kinesis' clock), which is
the order of a shard. So the replay:

- starts each shard ``AT_TIMESTAMP`` ``from`` less the clock margin ``U`` (1 s,
  docs/ordering.md): a change made just after ``from`` reaches Kinesis after it, unless the two
  clocks disagree, by at most ``U``;
- stops a shard at its first record that reached Kinesis more than ``margin_s`` after
  ``until``: a change made before ``until`` can reach Kinesis late (DynamoDB retries its writes
  to a throttled stream), and reading on costs only time, since order is enforced per item;
- stops a shard caught up (a read found nothing more) once ``until`` has passed on syncer's clock:
  what reaches the stream later is the following worker's, as any new change is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from syncer.core.versions import CLOCK_UNCERTAINTY_MS
from syncer.errors import ConfigError

DEFAULT_UNTIL_MARGIN_S = 300.0
CLOCK_MARGIN_S = CLOCK_UNCERTAINTY_MS / 1000
_RELATIVE = re.compile(r"-([0-9]+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
TIME_HELP = "ISO-8601 with a zone (2026-12-01T08:00:00Z, ...+01:00), 'now', or relative: -90s, -30m, -2h, -7d"


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """TIME as an aware datetime: ISO-8601 with a zone, ``now``, or ``-N`` s/m/h/d before ``now``."""
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.fullmatch(value)
    if relative is not None:
        return now - dt.timedelta(seconds=int(relative.group(1)) * _UNIT_S[relative.group(2)])
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"time {text!r} is not one of: {TIME_HELP}") from None
    if moment.tzinfo is None:
        raise ConfigError(
            f"time {text!r} has no zone; add one (Z for UTC, or +HH:MM), e.g. {value}Z"
        )
    return moment.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """The changes to replay: from ``start`` to ``until``, shards read ``margin_s`` past it."""

    start: dt.datetime
    until: dt.datetime
    margin_s: float = DEFAULT_UNTIL_MARGIN_S

    @classmethod
    def parse(
        cls,
        from_text: str,
        until_text: str | None,
        now: dt.datetime,
        margin_s: float = DEFAULT_UNTIL_MARGIN_S,
    ) -> ReplayWindow:
        """The window of ``--from``/``--until`` (``until`` default: ``now``), or why not."""
        start = parse_time(from_text, now)
        until = parse_time(until_text, now) if until_text is not None else now
        if start > until:
            raise ConfigError(
                f"--from {_iso(start)} is after --until {_iso(until)}: nothing to replay"
            )
        if start > now:
            raise ConfigError(f"--from {_iso(start)} is in the future (now {_iso(now)})")
        if margin_s < 0:
            raise ConfigError(f"the until margin must not be negative, got {margin_s:g} s")
        return cls(start, until, margin_s)

    @property
    def start_s(self) -> float:
        """Where each shard starts (``AT_TIMESTAMP``): ``from`` less the clock margin."""
        return self.start.timestamp() - CLOCK_MARGIN_S

    @property
    def stop_after_s(self) -> float:
        """A record that reached Kinesis after this is past the window."""
        return self.until.timestamp() + self.margin_s

    def checkpoint_key(self, stream_arn: str) -> str:
        """Where the replay keeps its checkpoints: its own, apart from the stream's follower."""
        return f"{stream_arn}#replay:{_iso(self.start)}..{_iso(self.until)}"

    def describe(self) -> str:
        return f"{_iso(self.start)} to {_iso(self.until)} (read {self.margin_s:g} s past it)"


@dataclass(frozen=True, slots=True)
class WindowCut:
    """What of one GetRecords answer belongs to the replay, and whether the shard is done."""

    keep: int  # the first ``keep`` records
    done: bool  # nothing after them is read


def cut_read(
    window: ReplayWindow,
    arrivals_s: Sequence[float],
    millis_behind_latest: int | None,
    now_s: float,
) -> WindowCut:
    """The part of a read (records' arrival times, in shard order) inside the window.

    Done at the first record past ``stop_after_s``, or at a read that found nothing at the
    shard's newest record (no records, ``MillisBehindLatest`` 0) once ``until`` has passed on
    syncer's clock. Only an empty read counts as caught up: the emulator answers 0 for a read
    whose last record arrived in the same millisecond as the shard's newest.
    """
    for position, arrival in enumerate(arrivals_s):
        if arrival > window.stop_after_s:
            return WindowCut(position, True)
    caught_up = not arrivals_s and millis_behind_latest == 0
    return WindowCut(len(arrivals_s), caught_up and now_s > window.until.timestamp())


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
