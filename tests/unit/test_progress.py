"""Progress of long commands: items done of the total, rate and ETA (issue 19, item 7)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from syncer.cli import progress as cli_progress


def test_without_a_terminal_a_log_line_gives_done_total_rate_and_eta(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Off a terminal, every 5 s a line says items done of the estimate, the rate and the ETA."""
    # given a progress of 1000 estimated items that is not on a terminal, and a clock
    clock = iter([100.0, 106.0, 107.0, 112.0])
    monkeypatch.setattr(cli_progress, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    monkeypatch.setattr(cli_progress.sys.stderr, "isatty", lambda: False)
    progress = cli_progress.progress(1000, "reindex t", "an estimate")
    with caplog.at_level(logging.INFO, logger="syncer.progress"), progress as advance:
        # when 300 items are done after 6 s, 100 more a second later, 200 more at 12 s
        advance(300)
        advance(100)
        advance(200)
    # then a line came at 6 s and at 12 s, none in between
    assert [record.getMessage() for record in caplog.records] == [
        "reindex t: 300 of ~1000 items (an estimate), 50/s, ETA 14 s",
        "reindex t: 600 of ~1000 items (an estimate), 50/s, ETA 8 s",
    ]
