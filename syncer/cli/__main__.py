"""``python -m syncer.cli``: the ``syncer`` command."""

from syncer.cli import main

main()
