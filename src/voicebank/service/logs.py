"""Structured logs: one JSON object per line, with the id of the request being served (when there is one)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("voicebank_request_id", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for k, v in vars(record).items():
            if k not in _STANDARD and k not in out:
                out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (it may be replaced after set-up)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class TextFormatter(logging.Formatter):
    """For a person at a terminal: ``12:00:01 INFO  ready in 1.2 s: ...``, with the request id when there
    is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid and record.name == "voicebank.service.access":
            duration = getattr(record, "duration_ms", None)
            text += f" {duration:.1f} ms" if isinstance(duration, (int, float)) else ""
            text += f" [{rid}]"
        return text


class _LoggedStartupFailure(logging.Filter):
    """Drops uvicorn's copy of a lifespan traceback once the service has logged the start-up failure itself
    in one line (``voicebank serve`` then exits 1 with that line)."""

    armed = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.armed and record.levelno >= logging.ERROR and isinstance(record.msg, str)
                    and record.msg.startswith("Traceback (most recent call last)"))


_startup_filter = _LoggedStartupFailure()


def startup_failure_logged() -> None:
    """Say that the start-up failure was logged (see :class:`_LoggedStartupFailure`)."""
    _startup_filter.armed = True


def configure(*, json_logs: bool = True, level: int = logging.INFO) -> None:
    """Send the ``voicebank`` and ``uvicorn`` loggers to stderr (JSON lines unless ``json_logs=False``, then
    :class:`TextFormatter`), and every other library's warnings and errors through the same handler (the root
    logger), so that no line of the server's log is in another format."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    handler.addFilter(_startup_filter)
    for name in ("voicebank", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level)
        lg.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True  # the service logs each request itself, with its id
