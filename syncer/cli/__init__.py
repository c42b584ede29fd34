"""The ``syncer`` command line: management commands around the same pipeline.

``main`` is the click group (console script ``syncer = "syncer.cli:main"``); importing the
command modules registers their commands on it.
"""

from __future__ import annotations

# Imported for their effect: each module's decorators register its commands on main.
from syncer.cli import deadletters, demo, kcl, purge, rebuild, run, setup, verify  # noqa: F401
from syncer.cli.app import main

__all__ = ["main"]
