"""Build the pipeline's clients and guards from a config: the imperative shell's wiring."""

from __future__ import annotations

from typing import Any

from syncer import cache, deadletter, search
from syncer.config import Config
from syncer.pipeline import Sinks
from syncer.resilience import Downstream


def aws_client(service: str) -> Any:
    """A boto3 client with botocore's own retries off; endpoints come from AWS_ENDPOINT_URL*."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        service, config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"})
    )


def build_sinks(config: Config) -> Sinks:
    """Clients for OpenSearch, Redis, DynamoDB and the dead letters, each behind its own breaker."""
    settings = config.resilience
    return Sinks(
        opensearch=search.make_client(config.opensearch),
        redis=cache.make_client(config.redis),
        dynamodb=aws_client("dynamodb"),
        deadletters=deadletter.make_sink(config.deadletter),
        opensearch_guard=Downstream("opensearch", settings),
        redis_guard=Downstream("redis", settings),
        dynamodb_guard=Downstream("dynamodb", settings),
        deadletter_guard=Downstream("deadletter", settings),
    )
