"""Logging for every archiver process: JSON lines off a terminal (for log shippers), readable on one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Context fields a log call may pass with extra={...}; they become JSON keys.
CONTEXT = ("event_id", "job_id", "destination", "webhook_type", "status")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({k: getattr(record, k) for k in CONTEXT if hasattr(record, k)})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, *, json_lines: bool | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if as_json else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party request logs would print URLs with signed query strings; keep them at warning.
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "azure", "google", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
