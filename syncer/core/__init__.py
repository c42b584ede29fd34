"""The pure core: decode, coalesce, order, route and plan; no I/O, no clients."""
