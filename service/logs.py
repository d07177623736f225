"""JSON-lines logging for the whole process (one object per line on stderr).

Records carry `extra={...}` fields as top-level keys. Message bodies, user ids and keys are never
logged at INFO: callers pass counts, ids of rules and packs, topics and partitions only.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

# `color_message` is uvicorn's ANSI-coloured copy of `msg`: noise in a JSON line.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName", "color_message"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


class RetriedConnectFailure(logging.Filter):
    """aiokafka logs each refused connection at ERROR; Redline's connect loop retries it and says
    so at WARNING (service/kafka/connection.py), so an outage the service rides out must not look
    like a fault: the line stays (it names the cause), as a warning. A failed SASL handshake and
    every other aiokafka error keep their level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.getMessage().startswith("Unable connect to"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every coordinator change; keep its warnings.
    aiokafka = logging.getLogger("aiokafka")
    aiokafka.setLevel(max(logging.WARNING, root.level))
    if not any(isinstance(f, RetriedConnectFailure) for f in aiokafka.filters):
        aiokafka.addFilter(RetriedConnectFailure())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
