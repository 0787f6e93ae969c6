"""Structured logs: one JSON object per line when ``GRIDPATROL_LOG_FORMAT=json``.

Each line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``process``, ``thread``,
and ``camera_id`` / ``ticket_id`` where known: from ``extra={"camera_id": ...}`` when a caller passes
them, else read from the message, whose house style puts the camera first (``camera 12: ...``) and
names tickets as ``ticket 34``. Exceptions go to ``exc`` as text.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
_CAMERA = re.compile(r"^(?:camera|cam) (?P<id>[\w.-]+)[:,]")
_TICKET = re.compile(r"\bticket #?(?P<id>\d+)\b")
_FIELDS = ("camera_id", "ticket_id", "worker_id", "event_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
            "process": record.process,
            "thread": record.threadName,
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if "camera_id" not in doc and (m := _CAMERA.match(message)):
            doc["camera_id"] = m.group("id")
        if "ticket_id" not in doc and (m := _TICKET.search(message)):
            doc["ticket_id"] = int(m.group("id"))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(log_format: str, *, level: int = logging.INFO) -> None:
    """Root logging for a process: ``text`` (the default, human lines) or ``json``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(
            f"GRIDPATROL_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)} (got {log_format!r})"
        )
    if log_format == "text":
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])
