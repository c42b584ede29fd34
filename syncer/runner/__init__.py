"""``syncer run``: the local stream poller, its shard cursors and checkpoints."""
