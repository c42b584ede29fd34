"""The Lambda entry point of the reindex state machine (template.yaml, ``ReindexStateMachine``).

One function, three steps, named by the event's ``step``; the state machine passes the
``job`` that ``prepare`` returns to every later step, so the workers share no state but the
indices themselves:

- ``{"step": "prepare", "input": {"table": T, "export_uri": S3_URI}}`` (or ``"segments": N``
  for a table without PITR): the new indices and reindex aliases, tombstones carried; returns
  ``{"job", "manifest": {"Bucket", "Key"}, "max_concurrency"}`` (the input's, else the
  template's ``ReindexMaxConcurrency`` which the machine passes along) or ``{"job", "segments": [...]}``.
- ``{"step": "load", "job", "file": <a manifest-files.json line>}``: one data file, checked
  and retried; ``{"step": "segment", "job", "segment": i}``: one scan segment. Each is
  idempotent, so a Distributed Map may run it again (a redrive of the failed items).
- ``{"step": "finish", "job"}``: old indices' live documents carried, then the swap.

The same functions run locally under ``syncer reindex --export --workers N``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from syncer.commands.exports import (
    ExportJob,
    finish_export,
    load_file,
    load_segment,
    prepare_export,
    prepare_scan,
    read_export,
    s3_client,
)
from syncer.config import Config, load_config, running_in_lambda
from syncer.core.exports import DataFile, ExportFormatError
from syncer.errors import ConfigError
from syncer.sinks.ports import Sinks

log = logging.getLogger(__name__)
# Distributed Map children at once when neither the execution's input nor the template's
# ReindexMaxConcurrency says: what the index can absorb (bench/RESULTS.md, "Backfill"), not
# Step Functions' default of 10,000.
DEFAULT_MAX_CONCURRENCY = 4
# Lambda's only writable directory: reindex.prepare's state lives there for the one prepare.
STATE_DIR = Path("/tmp")

_clients: tuple[Config, Sinks, Any] | None = None


def _get_clients() -> tuple[Config, Sinks, Any]:
    global _clients
    if _clients is None:
        from syncer.sinks.build import build_sinks

        if running_in_lambda():
            from syncer.obs.logs import configure_logging

            configure_logging(json_lines=True)
        config = load_config()
        _clients = (config, build_sinks(config), s3_client())
    return _clients


def reset_clients() -> None:
    """Forget the cached config and clients (tests)."""
    global _clients
    _clients = None


def _data_file(line: Mapping[str, Any]) -> DataFile:
    key, count, md5 = line.get("dataFileS3Key"), line.get("itemCount"), line.get("md5Checksum")
    if not isinstance(key, str) or not isinstance(count, int) or not isinstance(md5, str):
        raise ExportFormatError(f"not a manifest-files.json line: {dict(line)!r}")
    return DataFile(key, count, md5)


def _prepare(
    config: Config, sinks: Sinks, s3: Any, request: Mapping[str, Any], default_concurrency: object
) -> dict[str, Any]:
    table = request.get("table")
    if not isinstance(table, str):
        raise ConfigError('the execution input needs "table"')
    progress = STATE_DIR / f".syncer-export-{table}.json"
    concurrency = int(
        str(request.get("max_concurrency") or default_concurrency or DEFAULT_MAX_CONCURRENCY)
    )
    if concurrency < 1:
        raise ConfigError(f"max_concurrency must be at least 1, not {concurrency}")
    export_uri = request.get("export_uri")
    if isinstance(export_uri, str) and export_uri:
        job, _ = prepare_export(config, sinks, s3, table, export_uri, progress)
        _, summary, _ = read_export(s3, export_uri)
        return {
            "job": job.to_json(),
            "manifest": {"Bucket": summary.bucket, "Key": summary.manifest_files_key},
            "max_concurrency": concurrency,
        }
    segments = int(request.get("segments") or 0)
    job = prepare_scan(config, sinks, table, segments, progress)
    return {
        "job": job.to_json(),
        "segments": list(range(segments)),
        "max_concurrency": concurrency,
    }


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Run the step the state machine asks for; an error fails the step (and is retried)."""
    config, sinks, s3 = _get_clients()
    step = event.get("step")
    if step == "prepare":
        return _prepare(config, sinks, s3, event.get("input") or {}, event.get("max_concurrency"))
    job = ExportJob.from_json(event["job"])
    if step == "load":
        counts = load_file(config, sinks, s3, job, _data_file(event["file"]))
    elif step == "segment":
        counts = load_segment(config, sinks, job, int(event["segment"]))
    elif step == "finish":
        return asdict(finish_export(config, sinks, job))
    else:
        raise ConfigError(f"unknown step {step!r}: prepare, load, segment or finish")
    log.info("%s done: %s", step, counts)
    return asdict(counts)
