"""Logging for every service: readable text by default, one JSON object a line on request."""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys

import msgspec

# Never let a secret reach a log line, whatever a library decides to print.
_SECRET = re.compile(r"(?i)((?:password|passwd|pwd|token|secret)=)[^&\s\"']*")
# Credentials in a URL's user part: nats://user:password@host, or a token as nats://token@host.
_URL_SECRET = re.compile(r"(?<![\w.-])([\w.%+-]+):[^\s@/'\"]+@|(://)[^\s:@/'\"]+@")

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _mask_url(match: re.Match[str]) -> str:
    return f"{match.group(1)}:***@" if match.group(1) else f"{match.group(2)}***@"


def redact(text: str) -> str:
    # Most lines hold neither `=` nor `@`: skip the regular expressions for them.
    if "=" in text:
        text = _SECRET.sub(r"\1***", text)
    if "@" in text:
        text = _URL_SECRET.sub(_mask_url, text)
    return text


class RedactedRecord(logging.LogRecord):
    """A record whose writer has masked every secret already (the API's access log).

    The formatters skip their own search for secrets in it: run on every line of a
    busy access log, those regular expressions were a third of the log's cost.
    """


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if isinstance(record, RedactedRecord) else redact(text)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "msg", ...extra}`: extras such as message_id and port."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": (
                record.getMessage()
                if isinstance(record, RedactedRecord)
                else redact(record.getMessage())
            ),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return msgspec.json.encode(entry).decode()


_settings: tuple[str, str] = ("info", "text")


def settings() -> tuple[str, str]:
    """(level, format) of the last `setup`: what a worker process must set up the same way."""
    return _settings


def setup(level: str = "info", fmt: str = "text") -> None:
    global _settings
    _settings = (level, fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Our lines show no caller, thread or process: logging need not look them up for
    # every record (the logging HOWTO's "Optimization"; two lines a message in the agent).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The NATS client is chatty at INFO about every reconnect attempt.
    for chatty in ("nats", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
