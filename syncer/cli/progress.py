"""Progress of the long commands (reindex, backfill, purge-tombstones): items done of the total,
rate and ETA."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click


class Progress:
    """Items done of the total, rate and ETA: a bar on a terminal, a log line every 5 s otherwise.

    ``total_note`` says where the total comes from when it is an estimate.
    """

    def __init__(self, total: int, label: str, total_note: str = "") -> None:
        self.total, self.label, self.done = total, label, 0
        self.total_note = f" ({total_note})" if total_note else ""
        self.started = self.last_log = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = click.progressbar(
                length=max(total, 1),
                label=f"{label}, ~{total} items{self.total_note}\n",
                file=sys.stderr,
                show_eta=True,
                show_percent=True,
                show_pos=True,
                item_show_func=lambda rate: None if rate is None else f"{rate:.0f}/s",
            )

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is not None:
            self.bar.__enter__()
        return self.advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def rate(self, now: float) -> float:
        return self.done / max(now - self.started, 1e-9)

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.bar is not None:
            self.bar.length = max(self.bar.length, self.done)  # the estimate was short
            self.bar.update(count, current_item=self.rate(now))
            return
        if now - self.last_log >= 5:
            self.last_log = now
            rate = self.rate(now)
            eta = (self.total - self.done) / rate if rate and self.total > self.done else 0
            logging.getLogger("syncer.progress").info(
                "%s: %d of ~%d items%s, %.0f/s, ETA %.0f s",
                self.label,
                self.done,
                self.total,
                self.total_note,
                rate,
                eta,
            )


def progress(total: int, label: str, total_note: str = "") -> Progress:
    return Progress(total, label, total_note)
