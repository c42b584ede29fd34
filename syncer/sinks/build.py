"""Build the pipeline's clients and guards from a config: the imperative shell's wiring."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from syncer.config import Config
from syncer.sinks import cache, deadletter, search
from syncer.sinks.ports import Sinks
from syncer.sinks.resilience import Downstream
from syncer.sinks.secrets import REDACTOR, resolve_secret, url_password

# botocore waits 60 s for a reply by default: longer than most invocations have left.
AWS_CONNECT_TIMEOUT_S = 2.0
AWS_READ_TIMEOUT_S = 5.0
AWS_REQUEST_MAX_S = AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S


def aws_client(service: str) -> Any:
    """A boto3 client with botocore's own retries off; endpoints come from AWS_ENDPOINT_URL*."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        service,
        config=BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=AWS_CONNECT_TIMEOUT_S,
            read_timeout=AWS_READ_TIMEOUT_S,
        ),
    )


class LazyAwsClient:
    """A boto3 client (from ``aws_client``) built on its first use.

    Importing boto3 and building a client cost about 150 ms of a cold start (bench/RESULTS.md),
    and most batches need neither: NEW_IMAGE streams never read the table, and dead letters are
    rare. Attribute access builds the client once, then forwards to it.
    """

    __slots__ = ("_client", "service")

    def __init__(self, service: str) -> None:
        self.service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = aws_client(self.service)
        return getattr(self._client, name)

    def close(self) -> None:
        """Close the client's connections, if it was ever built."""
        if self._client is not None:
            self._client.close()


def opensearch_client(config: Config, environ: Mapping[str, str] | None = None) -> Any:
    """The OpenSearch client of ``config``, its password resolved (and registered for redaction)."""
    environ = os.environ if environ is None else environ
    REDACTOR.add(url_password(config.opensearch.url))
    password = resolve_secret(
        config.opensearch.password, "opensearch.password", environ, aws_client
    )
    return search.make_client(config.opensearch, password)


def redis_client(config: Config, environ: Mapping[str, str] | None = None) -> Any:
    """The Redis client of ``config``, its password resolved (and registered for redaction)."""
    environ = os.environ if environ is None else environ
    REDACTOR.add(url_password(config.redis.url))
    password = resolve_secret(config.redis.password, "redis.password", environ, aws_client)
    return cache.make_client(config.redis, password)


def build_sinks(config: Config, environ: Mapping[str, str] | None = None) -> Sinks:
    """Clients for OpenSearch, Redis, DynamoDB and the dead letters, each behind its own breaker."""
    settings = config.resilience
    return Sinks.of_clients(
        opensearch=opensearch_client(config, environ),
        redis=redis_client(config, environ),
        dynamodb=LazyAwsClient("dynamodb"),
        deadletters=deadletter.make_sink(config.deadletter, LazyAwsClient),
        opensearch_guard=Downstream("opensearch", settings),
        opensearch_limits=config.opensearch,
        # A Redis request may take its connect timeout and then its socket timeout.
        redis_guard=Downstream("redis", settings, 2 * config.redis.timeout_s),
        dynamodb_guard=Downstream("dynamodb", settings, AWS_REQUEST_MAX_S),
        deadletter_guard=Downstream(
            "deadletter", settings, AWS_REQUEST_MAX_S if config.deadletter.sqs_queue_url else None
        ),
    )
