"""The access log: one line per request, written off the event loop, in batches.

uvicorn's own access log builds a log record, formats it and writes and flushes it on
the event loop for every request; at the gateway's rates that is a large share of a
request's cost (see bench/RESULTS.md). Here the loop only notes the request (a tuple
appended to a deque); a writer thread turns what gathered into lines every `interval`
seconds and hands each plain stream handler one write of all of them. The lines of the
usual text format are made without a log record each (the records and the formatter's
machinery were most of the writer's cost); other formatters get log records.
Lines read as uvicorn's did, on the logger `smsgate.access`, and every query value is
masked except harmless ones, so no password, number or text reaches a log line.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any
from urllib.parse import unquote_plus

from smsgate.logs import RedactedRecord, TextFormatter
from starlette.types import Message, Scope

logger = logging.getLogger("smsgate.access")

# Parameters whose values may appear in the access log; every other value is masked.
_LOGGED_PARAMS = frozenset({"port", "report", "timeout", "id", "dr", "type", "since"})
_FORMAT = '%s - "%s %s HTTP/%s" %d'
# Handlers whose emit() is exactly "format, write, flush": one write serves a whole batch.
_PLAIN_STREAMS = (logging.StreamHandler, logging.FileHandler)

# Lines formatted between two chances for the event loop to take the GIL back.
_CHUNK = 64

# (when, client, method, path, query, http_version, status)
Entry = tuple[float, tuple[str, int] | None, str, str, bytes, str, int]


def redact_target(target: str) -> str:
    """A request target with every query value masked except harmless ones (port, id...)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    pairs = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq:
            if "%" in name or "+" in name:
                key = unquote_plus(name).strip().lower()
            else:  # the usual plain name: nothing to unquote (a tenth of a line's cost)
                key = name.strip().lower()
            # A kept value holding `=` could smuggle `password=...` past the formatter.
            if key not in _LOGGED_PARAMS or "=" in value:
                value = "***"
        pairs.append(f"{name}{eq}{value}")
    return f"{path}?{'&'.join(pairs)}"


class AccessLog:
    """Notes requests on the event loop; a daemon thread writes them every `interval`."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._entries: collections.deque[Entry] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lines = _TextLines()  # the writer thread's (and stop's, after it)

    def note(self, scope: Scope, message: Message) -> None:
        """Called with each `http.response.start`: its status and the request's scope."""
        self.note_request(
            scope.get("client"),
            scope["method"],
            scope["path"],
            scope["query_string"],
            scope["http_version"],
            message["status"],
        )

    def note_request(
        self,
        client: tuple[str, int] | None,
        method: str,
        path: str,
        query: bytes,
        http_version: str,
        status: int,
    ) -> None:
        """One answered request (the lean `/sendsms` path calls this without a scope)."""
        self._entries.append((time.time(), client, method, path, query, http_version, status))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the writer and write what is left."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        """Write every noted request (from the writer thread, or at stop)."""
        entries = self._entries
        enabled = logger.isEnabledFor(logging.INFO)
        while entries:
            chunk: list[Entry] = []
            while entries and len(chunk) < _CHUNK:
                chunk.append(entries.popleft())  # atomic: the loop may append meanwhile
            if enabled:
                _emit(chunk, self._lines)
            # Hand the GIL back between chunks: the event loop waits for none of this.
            time.sleep(0)


def _message(entry: Entry) -> str:
    """The line's message: `client - "METHOD target HTTP/v" status`, the query redacted."""
    _, client, method, path, query, http_version, status = entry
    target = path if not query else redact_target(f"{path}?{query.decode('latin-1')}")
    where = f"{client[0]}:{client[1]}" if client else "-"
    return _FORMAT % (where, method, target, http_version, status)


def _record(entry: Entry) -> logging.LogRecord:
    created = entry[0]
    record = RedactedRecord(logger.name, logging.INFO, __file__, 0, _message(entry), None, None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


class _TextLines:
    """Lines exactly as `TextFormatter` writes them, without a LogRecord each.

    Building a record and running the formatter's machinery was half of a line's cost
    on the writer thread, whose CPU the event loop shares through the GIL.
    """

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""
        self._prefix = f" {logging.getLevelName(logging.INFO):<7} {logger.name}: "

    def line(self, entry: Entry) -> str:
        created = entry[0]
        second = int(created)
        if second != self._second:  # as Formatter.formatTime, once a second
            self._second = second
            self._stamp = time.strftime(
                logging.Formatter.default_time_format, time.localtime(second)
            )
        msecs = int((created - second) * 1000)
        return f"{self._stamp},{msecs:03d}{self._prefix}{_message(entry)}"


def _writes_text(handler: logging.Handler) -> bool:
    formatter = handler.formatter
    return (
        type(formatter) is TextFormatter
        and formatter.converter is time.localtime
        and formatter.default_time_format == logging.Formatter.default_time_format
        and formatter.default_msec_format == "%s,%03d"
    )


def _plain(handler: logging.Handler) -> logging.StreamHandler[Any] | None:
    """The handler, when its emit() is exactly "format, write, flush" (one write serves many)."""
    if (
        isinstance(handler, logging.StreamHandler)
        and type(handler) in _PLAIN_STREAMS
        and not handler.filters
        and getattr(handler, "stream", None) is not None
    ):
        return handler
    return None


def _emit(entries: list[Entry], lines: _TextLines) -> None:
    records: list[logging.LogRecord] | None = None
    source: logging.Logger | None = logger
    while source is not None:
        for handler in source.handlers:
            if handler.level > logging.INFO:
                continue
            plain = _plain(handler)
            if plain is not None and _writes_text(plain):
                try:
                    text = "".join(lines.line(e) + plain.terminator for e in entries)
                except Exception:
                    plain.handleError(_record(entries[0]))
                    continue
                _write(plain, text, entries)
                continue
            if records is None:
                records = [_record(entry) for entry in entries]
            if plain is not None:
                try:
                    text = "".join(plain.format(r) + plain.terminator for r in records)
                except Exception:
                    plain.handleError(records[0])
                    continue
                _write(plain, text, entries)
                continue
            for record in records:
                handler.handle(record)
        source = source.parent if source.propagate else None


def _write(handler: logging.StreamHandler[Any], text: str, entries: list[Entry]) -> None:
    try:
        with handler.lock or threading.Lock():
            handler.stream.write(text)
            handler.flush()
    except Exception:
        # As StreamHandler.emit does: a broken stream (a closed pipe, a full disk) is
        # reported and skipped, never the end of the writer thread, which would leave
        # every later request to pile up in memory.
        handler.handleError(_record(entries[0]))
