"""The Lambda entry point of the reindex state machine (template.yaml, ``ReindexStateMachine``).

One function, four steps, named by the event's ``step``. The steps share nothing but the
rebuild's job record in OpenSearch (``syncer.core.jobs``): ``prepare`` claims it, and the
machine hands every later step only the job's id and epoch (its fencing token), so any step
can run on any container, be retried with the same input, and stops, changing nothing, when
the job was abandoned or taken over:

- ``{"step": "prepare", "execution": <$$.Execution.Id>, "input": {"table": T, "export_uri":
  S3_URI}}`` (or ``"segments": N`` for a table without PITR; optional ``"max_concurrency"``):
  the job claimed (or this execution's resumed: a retried prepare goes on), new indices and
  reindex aliases, tombstones carried; returns ``{"job": {"id", "epoch"}, "manifest":
  {"Bucket", "Key"}, "max_concurrency"}`` or ``{"job", "segments": [...], "max_concurrency"}``.
- ``{"step": "load", "job", "file": <a manifest-files.json line>}``: one data file, checked
  and retried; ``{"step": "segment", "job", "segment": i}``: one scan segment. A work item the
  job already counts as done is not loaded again.
- ``{"step": "finish", "job"}``: settle, block, swap, catch-up, from the phase the record names.

Every field is checked first; a bad one is a ``ConfigError`` naming it. The same functions run
locally under ``syncer reindex --export --workers N``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from syncer.commands.exports import (
    ExportJob,
    FileCounts,
    finish_export,
    load_file,
    load_segment,
    loaded,
    prepare_export,
    prepare_scan,
    read_export,
    s3_client,
)
from syncer.commands.jobs import JobHandle, attach_job, job_store
from syncer.commands.reindex import MAX_SEGMENTS
from syncer.config import Config, load_config, running_in_lambda
from syncer.core.exports import DataFile, ExportFormatError
from syncer.core.jobs import LOAD, Progressed, WorkProgress
from syncer.errors import ConfigError
from syncer.sinks.ports import Sinks

log = logging.getLogger(__name__)
# Distributed Map children at once when neither the execution's input nor the template's
# ReindexMaxConcurrency says: what the index can absorb (bench/RESULTS.md, "Backfill"), not
# Step Functions' default of 10,000.
DEFAULT_MAX_CONCURRENCY = 4
MAX_CONCURRENCY = 10_000  # a Distributed Map's own ceiling
STEPS = ("prepare", "load", "segment", "finish")
INPUT_FIELDS = ("table", "export_uri", "segments", "max_concurrency")

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
    """Forget the cached config and clients (tests: a fresh container)."""
    global _clients
    _clients = None


def _data_file(line: object) -> DataFile:
    if not isinstance(line, Mapping):
        raise ConfigError(f'"file" must be a manifest-files.json line (an object), not {line!r}')
    key, count, md5 = line.get("dataFileS3Key"), line.get("itemCount"), line.get("md5Checksum")
    if not isinstance(key, str) or not isinstance(count, int) or not isinstance(md5, str):
        raise ExportFormatError(f"not a manifest-files.json line: {dict(line)!r}")
    return DataFile(key, count, md5)


def _whole_number(name: str, value: object, low: int, high: int, *, text_ok: bool = False) -> int:
    """``value`` as an int in [low, high], or a ConfigError naming ``name``."""
    if isinstance(value, str) and text_ok and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f'"{name}" must be a whole number, not {value!r}')
    if not low <= value <= high:
        raise ConfigError(f'"{name}" must be between {low} and {high}, not {value}')
    return value


def check_prepare_input(request: object, default_concurrency: object) -> dict[str, Any]:
    """The execution input, checked field by field: ``{"table", "export_uri" | "segments",
    "max_concurrency"}``."""
    if not isinstance(request, Mapping):
        raise ConfigError(f"the execution input must be an object, not {request!r}")
    unknown = sorted(set(request) - set(INPUT_FIELDS))
    if unknown:
        raise ConfigError(
            f"the execution input has unknown field(s) {unknown}: it takes {list(INPUT_FIELDS)}"
        )
    table = request.get("table")
    if not isinstance(table, str) or not table:
        raise ConfigError(f'the execution input needs "table" (a configured table), not {table!r}')
    export_uri, segments = request.get("export_uri"), request.get("segments")
    if (export_uri is None) == (segments is None):
        raise ConfigError(
            'the execution input needs exactly one of "export_uri" (an export) and '
            '"segments" (a scan of a table without PITR)'
        )
    checked: dict[str, Any] = {"table": table}
    if export_uri is not None:
        if not isinstance(export_uri, str) or not export_uri.startswith("s3://"):
            raise ConfigError(f'"export_uri" must be an s3:// URI, not {export_uri!r}')
        checked["export_uri"] = export_uri
    else:
        checked["segments"] = _whole_number("segments", segments, 1, MAX_SEGMENTS)
    if "max_concurrency" in request:
        checked["max_concurrency"] = _whole_number(
            "max_concurrency", request["max_concurrency"], 1, MAX_CONCURRENCY
        )
    elif default_concurrency is not None:
        checked["max_concurrency"] = _whole_number(
            "max_concurrency (the template's ReindexMaxConcurrency)",
            default_concurrency,
            1,
            MAX_CONCURRENCY,
            text_ok=True,
        )
    else:
        checked["max_concurrency"] = DEFAULT_MAX_CONCURRENCY
    return checked


def _token(event: Mapping[str, Any]) -> tuple[str, tuple[str, int]]:
    """(table, (job id, epoch)) of a step's ``"job"``."""
    job = event.get("job")
    if not isinstance(job, Mapping) or not isinstance(job.get("id"), str) or "-" not in job["id"]:
        raise ConfigError(
            f'the {event.get("step")} step needs "job": {{"id", "epoch"}}, not {job!r}'
        )
    epoch = _whole_number("job.epoch", job.get("epoch"), 1, 2**31)
    table = str(job["id"]).rsplit("-", 1)[0]
    return table, (str(job["id"]), epoch)


def _prepare(config: Config, sinks: Sinks, s3: Any, event: Mapping[str, Any]) -> dict[str, Any]:
    request = check_prepare_input(event.get("input"), event.get("max_concurrency"))
    config.require_table(request["table"])
    execution = event.get("execution")
    owner = f"state-machine:{execution if isinstance(execution, str) and execution else 'unnamed'}"
    if "export_uri" in request:
        handle, _ = prepare_export(
            config, sinks, s3, request["table"], request["export_uri"], owner=owner
        )
        _, summary, _ = read_export(s3, request["export_uri"])
        return {
            "job": {"id": handle.job.id, "epoch": handle.job.epoch},
            "manifest": {"Bucket": summary.bucket, "Key": summary.manifest_files_key},
            "max_concurrency": request["max_concurrency"],
        }
    handle = prepare_scan(config, sinks, request["table"], request["segments"], owner=owner)
    return {
        "job": {"id": handle.job.id, "epoch": handle.job.epoch},
        "segments": list(range(handle.job.segments)),
        "max_concurrency": request["max_concurrency"],
    }


def _work_item(
    config: Config, sinks: Sinks, s3: Any, handle: JobHandle, event: Mapping[str, Any]
) -> FileCounts:
    """One work item of the job, unless the job already counts it as done."""
    job = handle.job
    if event["step"] == "load":
        data_file = _data_file(event.get("file"))
        key = data_file.key
    else:
        segment = _whole_number("segment", event.get("segment"), 0, max(job.segments - 1, 0))
        key = f"segment-{segment}"
    if key not in job.work_items:
        raise ConfigError(f"job {job.id} has no work item {key!r}")
    saved = job.progress.get(key, WorkProgress())
    if saved.done or job.phase != LOAD:  # a retry of a loaded item: its first counts stand
        return FileCounts(saved.items, saved.written, saved.already_newer, saved.rejected)
    view = ExportJob.of(job)
    if event["step"] == "load":
        counts = load_file(config, sinks, s3, view, data_file)
    else:
        counts = load_segment(config, sinks, view, segment)
    handle.apply(Progressed(key, loaded(counts)))
    return counts


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Run the step the state machine asks for; an error fails the step (and is retried)."""
    if not isinstance(event, Mapping):
        raise ConfigError(f"a reindex step's event must be an object, not {event!r}")
    step = event.get("step")
    if step not in STEPS:
        raise ConfigError(f'unknown step {step!r}: "step" is one of {", ".join(STEPS)}')
    if step == "prepare":
        check_prepare_input(event.get("input"), event.get("max_concurrency"))
        config, sinks, s3 = _get_clients()
        return _prepare(config, sinks, s3, event)
    table, token = _token(event)
    config, sinks, s3 = _get_clients()
    handle = attach_job(job_store(sinks), table, token)
    with handle.holding():
        if step == "finish":
            return asdict(finish_export(config, sinks, handle))
        counts = _work_item(config, sinks, s3, handle, event)
    log.info("%s done: %s", step, counts)
    return asdict(counts)
