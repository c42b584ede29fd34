"""Libraries for the services that read what syncer maintains (syncer itself only reads entries).

``syncer.client.cachefill`` (leased cache fills) and ``syncer.client.freshness`` (read your writes
through search, also importable as ``syncer.freshness``). They import nothing else of syncer:
the ``syncer-client`` distribution (clients/python/) ships them alone, with redis-py as their
only dependency (docs/api.md).
"""

__version__ = "0.2.0"  # the syncer-client distribution's version; equal to syncer's
