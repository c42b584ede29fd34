"""The I/O edges: OpenSearch, Redis, DynamoDB, dead letters, checkpoints, and their guards."""
