"""syncer's TOML configuration: read, overridden from the environment, validated at start.

The modules, each with one job: ``schema`` (the dataclasses), ``parse`` (TOML sections ->
dataclasses), ``rules`` (the refusals that compare values), ``names`` (index names),
``templates`` (cache key templates), ``transforms`` (route transforms) and ``environment`` (the
only reader of the process environment).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from syncer.config.environment import (
    aws_endpoint_overridden,
    config_path,
    emf_metrics_enabled,
    environment,
    running_in_lambda,
    with_overrides,
)
from syncer.config.names import MAX_INDEX_NAME_BYTES
from syncer.config.parse import parse_sections
from syncer.config.rules import check_rules, cluster_database_message, redis_database
from syncer.config.schema import (
    CheckpointConfig,
    Config,
    DeadLetterConfig,
    OpenSearchConfig,
    RedisConfig,
    ResilienceConfig,
    Route,
    RouteMatch,
    SecretRef,
    TableConfig,
)
from syncer.config.transforms import import_transform
from syncer.errors import ConfigError

__all__ = [
    "MAX_INDEX_NAME_BYTES",
    "CheckpointConfig",
    "Config",
    "DeadLetterConfig",
    "OpenSearchConfig",
    "RedisConfig",
    "ResilienceConfig",
    "Route",
    "RouteMatch",
    "SecretRef",
    "TableConfig",
    "aws_endpoint_overridden",
    "cluster_database_message",
    "config_path",
    "emf_metrics_enabled",
    "import_transform",
    "load_config",
    "parse_config",
    "redis_database",
    "running_in_lambda",
]


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build a validated ``Config`` from parsed TOML; ``OPENSEARCH_URL``/``REDIS_URL`` override."""
    return check_rules(parse_sections(with_overrides(raw, environment(environ))))


def load_config(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration file."""
    path = config_path(explicit, environ)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found (set --config or SYNCER_CONFIG)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None
    return parse_config(raw, environ)
