"""Management commands: reindex, verify, dead-letter redrive, purge-tombstones."""
