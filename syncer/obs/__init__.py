"""Observability: log lines and metrics (EMF and Prometheus)."""
