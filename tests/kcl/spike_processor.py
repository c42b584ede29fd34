#!/usr/bin/env python3
"""KCL spike record processor: append each record to a JSON-lines file, checkpoint each batch.

Run by the MultiLangDaemon (tests/kcl/fleet_spike.sh), with amazon_kclpy on PYTHONPATH. Not
syncer's processor: it shows that leases, delivery, checkpoints and failover work.
"""

from __future__ import annotations

import json
import os
from typing import Any

from amazon_kclpy import kcl  # type: ignore[import-not-found]
from amazon_kclpy.v3 import processor  # type: ignore[import-not-found]

OUT = os.environ["SPIKE_OUT"]
WORKER = os.environ["SPIKE_WORKER"]


class JsonLinesProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    """Writes initialize/record/checkpoint/lease events of one shard to ``SPIKE_OUT``."""

    shard = "?"

    def _write(self, **fields: Any) -> None:
        with open(OUT, "a", encoding="utf-8") as out:
            out.write(json.dumps({**fields, "worker": WORKER, "shard": self.shard}) + "\n")

    def initialize(self, initialize_input: Any) -> None:
        self.shard = initialize_input.shard_id
        self._write(event="initialize", seq=initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        last = None
        for record in process_records_input.records:
            data = record.binary_data.decode("utf-8")
            self._write(event="record", seq=record.sequence_number, data=data)
            last = record.sequence_number
        if last is not None:
            # Only after the records are written (durable): what syncer's processor must do.
            process_records_input.checkpointer.checkpoint(last)
            self._write(event="checkpoint", seq=last)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._write(event="lease_lost")

    def shard_ended(self, shard_ended_input: Any) -> None:
        self._write(event="shard_ended")
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._write(event="shutdown_requested")
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(JsonLinesProcessor()).run()
