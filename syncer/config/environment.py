"""The process environment: variables that override the file, and the few read elsewhere.

The configuration package is the only reader of the environment (docs/configuration.md,
"Environment overrides"); every other module gets these values from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError

DEFAULT_CONFIG_PATH = "syncer.toml"


def environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """``environ`` when given (tests), else the process environment."""
    return os.environ if environ is None else environ


def with_overrides(raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The parsed TOML with the sections the environment replaces (URLs, secrets, queue)."""
    for name in ("opensearch", "redis"):
        if not isinstance(raw.get(name) or {}, Mapping):
            raise ConfigError(f"[{name}] must be a table of keys")
    opensearch = dict(raw.get("opensearch") or {})
    redis = dict(raw.get("redis") or {})
    if environ.get("OPENSEARCH_URL"):
        opensearch["url"] = environ["OPENSEARCH_URL"]
    if environ.get("REDIS_URL"):
        redis["url"] = environ["REDIS_URL"]
    # template.yaml passes Secrets Manager ARNs this way; they win over the file's password.
    if environ.get("SYNCER_OPENSEARCH_SECRET_ARN"):
        opensearch["password"] = {"secrets_manager": environ["SYNCER_OPENSEARCH_SECRET_ARN"]}
    if environ.get("SYNCER_REDIS_SECRET_ARN"):
        redis["password"] = {"secrets_manager": environ["SYNCER_REDIS_SECRET_ARN"]}
    overridden = {**raw, "opensearch": opensearch, "redis": redis}
    if environ.get("SYNCER_DEADLETTER_QUEUE_URL"):  # set by template.yaml
        overridden["deadletter"] = {"sqs_queue_url": environ["SYNCER_DEADLETTER_QUEUE_URL"]}
    consistency = raw.get("consistency") or {}
    if environ.get("SYNCER_CONSISTENCY_QUEUE_URL") and isinstance(consistency, Mapping):
        queue_url = environ["SYNCER_CONSISTENCY_QUEUE_URL"]  # set by template.yaml
        overridden["consistency"] = {**consistency, "queue_url": queue_url}
    return overridden


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``SYNCER_CONFIG``, then ``./syncer.toml``."""
    return Path(explicit or environment(environ).get("SYNCER_CONFIG") or DEFAULT_CONFIG_PATH)


def running_in_lambda(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a Lambda function (the runtime sets ``AWS_LAMBDA_FUNCTION_NAME``)."""
    return bool(environment(environ).get("AWS_LAMBDA_FUNCTION_NAME"))


def emf_metrics_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the handler prints an EMF metrics line per batch (``SYNCER_METRICS``, default emf)."""
    return environment(environ).get("SYNCER_METRICS", "emf") == "emf"


def aws_endpoint_overridden(environ: Mapping[str, str] | None = None) -> bool:
    """Whether AWS calls go to a local emulator (``AWS_ENDPOINT_URL`` or its DynamoDB form)."""
    environ = environment(environ)
    return bool(environ.get("AWS_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL_DYNAMODB"))


def rebuild_kill_point(environ: Mapping[str, str] | None = None) -> str:
    """TEST ONLY: ``SYNCER_TEST_KILL_AT`` names where a rebuild SIGKILLs its own process: a
    phase it has just entered (``settle``, ``swap``, ...) or ``load:N`` (after N work items).
    The crash tests (tests/integration/test_rebuild_crashes.py) set it; nothing else should."""
    return environment(environ).get("SYNCER_TEST_KILL_AT", "")
