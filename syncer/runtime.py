"""Build the pipeline's clients and guards from a config: the imperative shell's wiring."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from syncer import cache, deadletter, search
from syncer.config import Config
from syncer.pipeline import Sinks
from syncer.resilience import Downstream
from syncer.secrets import REDACTOR, resolve_secret, url_password


def aws_client(service: str) -> Any:
    """A boto3 client with botocore's own retries off; endpoints come from AWS_ENDPOINT_URL*."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        service, config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"})
    )


def build_sinks(config: Config, environ: Mapping[str, str] | None = None) -> Sinks:
    """Clients for OpenSearch, Redis, DynamoDB and the dead letters, each behind its own breaker.

    Passwords are resolved here, once, and registered for redaction from every log line.
    """
    environ = os.environ if environ is None else environ
    settings = config.resilience
    for url in (config.opensearch.url, config.redis.url):
        REDACTOR.add(url_password(url))
    os_password = resolve_secret(
        config.opensearch.password, "opensearch.password", environ, aws_client
    )
    redis_password = resolve_secret(config.redis.password, "redis.password", environ, aws_client)
    return Sinks(
        opensearch=search.make_client(config.opensearch, os_password),
        redis=cache.make_client(config.redis, redis_password),
        dynamodb=aws_client("dynamodb"),
        deadletters=deadletter.make_sink(config.deadletter),
        opensearch_guard=Downstream("opensearch", settings),
        redis_guard=Downstream("redis", settings),
        dynamodb_guard=Downstream("dynamodb", settings),
        deadletter_guard=Downstream("deadletter", settings),
    )
