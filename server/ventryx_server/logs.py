"""How the server logs: readable lines for people (the default) or, with
``VENTRYX_LOG_FORMAT=json``, one JSON object per line for a log pipeline, with one access
line per request (request id, method, route template, status, duration, credential id).

Never a secret: the access line names the route template (``/v1/api-keys/{key_id}``),
never the path or query a client typed (a key pasted into a URL stays out), and the
credential's id (``key_…``, ``ses_…``), never the token.
"""

import json
import logging
import sys
import time
from typing import Any

LOG_FORMATS = ("text", "json")
access_log = logging.getLogger("ventryx.access")
access_lines = False  # one line per request: only in JSON, for a pipeline to count

# LogRecord attributes that are not a caller's ``extra``.
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (name, value)
            for name, value in vars(record).items()
            if name not in _STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str) -> None:
    """The root logger's one handler, on stderr, in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    global access_lines
    access_lines = log_format == "json"


def log_request(
    request_id: str, method: str, route: str, status: int, seconds: float, credential_id: str | None
) -> None:
    access_log.info(
        "%s %s %d",
        method,
        route,
        status,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "credential_id": credential_id,
        },
    )


def granian_config(log_format: str) -> dict[str, Any] | None:
    """Granian's own lines (start, workers, stop) in the same format; None: its default."""
    if log_format != "json":
        return None
    json_formatter = {"()": f"{__name__}.JsonFormatter"}
    return {"formatters": {"generic": json_formatter, "access": json_formatter}}
