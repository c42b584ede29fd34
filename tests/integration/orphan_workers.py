"""A parent that runs sleeping work items in ``run_work_items``'s process pool, for the test
that kills it (issue 24, defect 13). Run: python -c "from tests.integration.orphan_workers
import main; main()" CONFIG; it prints its workers' pids, then waits."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from syncer.commands.exports.job import FileCounts
from syncer.commands.exports.runner import run_work_items
from syncer.config import Config, load_config
from syncer.core.exports import DataFile
from syncer.sinks.ports import Sinks


def sleeping_item(
    config: Config,
    sinks: Sinks,
    s3: Any,
    job: Mapping[str, Any],
    data_file: DataFile,
    page_size: int,
) -> FileCounts:
    """A work item that outlives any test: its process must end with its parent."""
    print(f"worker {__import__('os').getpid()}", flush=True)
    time.sleep(600)
    return FileCounts()


def main() -> None:
    config_path = sys.argv[1]
    config = load_config(config_path)
    items = [DataFile(f"item-{number}", 0, "") for number in range(2)]
    run_work_items(
        config,
        None,  # type: ignore[arg-type]  # the pool's workers build their own
        None,
        sleeping_item,
        {},
        items,
        set(),  # nothing done before
        lambda _file, _counts: None,  # never reached: the items outlive the test
        workers=2,
        page_size=1,
        on_progress=lambda _: None,
    )
