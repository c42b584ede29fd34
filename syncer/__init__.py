"""syncer keeps OpenSearch and Redis in step with DynamoDB Streams."""

__version__ = "0.2.0"
