"""Libraries for the services that read what syncer maintains (not used by syncer itself)."""
