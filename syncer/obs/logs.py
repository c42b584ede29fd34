"""Log lines: structured JSON (Lambda, production) or text (a terminal), always redacted."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from syncer.sinks.secrets import REDACTOR

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": REDACTOR(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _redacted(value)
        if record.exc_info:
            entry["exception"] = REDACTOR(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTOR(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        batch = getattr(record, "batch", None)
        if isinstance(batch, dict):
            text += " " + " ".join(f"{k}={v}" for k, v in batch.items())
        return REDACTOR(text)


def configure_logging(json_lines: bool, level: int = logging.INFO) -> None:
    """Route the root logger to stderr (text) or stdout (JSON, as Lambda collects it)."""
    handler = logging.StreamHandler(sys.stdout if json_lines else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Client libraries log every request or expected 404; syncer logs what matters itself.
    for noisy in ("opensearch", "urllib3", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
