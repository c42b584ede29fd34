"""The OpenSearch client, built once with its own retries off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer.config import OpenSearchConfig
from syncer.sinks.search.targets import SIDE_REQUESTS

if TYPE_CHECKING:
    from opensearchpy import OpenSearch


def make_client(settings: OpenSearchConfig, password: str | None = None) -> OpenSearch:
    """An opensearch-py client with its own retries off: syncer's retry policy is the only one.

    It is shared by threads: a write round sends its reindex aliases' ``HEAD`` requests from a
    small pool (``syncer.sinks.search.targets``).

    ``auth = "sigv4"`` signs with the function's AWS credentials (service ``es``, or ``aoss``
    for serverless collections); ``basic`` sends username and password; TLS verifies
    certificates, against ``ca_certs`` when given.
    """
    from opensearchpy import OpenSearch

    options: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": settings.timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        "http_compress": False,
        "verify_certs": settings.verify_certs,
        # One connection for the calling thread and one per side request (``_read_round``):
        # urllib3 would otherwise open and discard a connection for every HEAD, with a warning.
        "pool_maxsize": SIDE_REQUESTS + 1,
    }
    if settings.ca_certs:
        options["ca_certs"] = settings.ca_certs
    if settings.auth == "basic":
        options["http_auth"] = (settings.username, password)
    elif settings.auth == "sigv4":
        import boto3
        from opensearchpy import Urllib3AWSV4SignerAuth

        session = boto3.Session()
        region = settings.aws_region or session.region_name
        options["http_auth"] = Urllib3AWSV4SignerAuth(
            session.get_credentials(), region, settings.aws_service
        )
    return OpenSearch(**options)
