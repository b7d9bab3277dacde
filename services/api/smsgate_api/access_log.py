"""The access log: one line per request, written off the event loop, in batches.

uvicorn's own access log builds a log record, formats it and writes and flushes it on
the event loop for every request; at the gateway's rates that is a large share of a
request's cost (see bench/RESULTS.md). Here a request only notes itself (a tuple
appended to a deque). Every `interval` seconds the event loop turns what gathered into
lines, a chunk per loop turn, and a writer thread hands each plain stream handler one
write of all of them, so a slow pipe or disk never holds the loop. The lines are made on
the loop, not in the thread: a thread formatting lines competes with the loop for the
GIL and stalled its requests (the production shape answered 0.61× Kannel with the log
on against 0.87× with it off when the thread formatted). The lines of the usual text
format are made without a log record each; other formatters get log records.
Lines read as uvicorn's did, on the logger `smsgate.access`, and every query value is
masked except harmless ones, so no password, number or text reaches a log line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
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

# Lines made in one turn of the event loop (~6 µs each).
_CHUNK = 256

# (when, client, method, path, query, http_version, status)
Entry = tuple[float, tuple[str, int] | None, str, str, bytes, str, int]


def redact_query(query: str) -> str:
    """A query string with every value masked except harmless ones (port, id...); the
    rest as it came."""
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, eq, value = pair.partition("=")
        if not eq:
            continue
        # The usual plain name has nothing to unquote (a tenth of a line's cost).
        key = unquote_plus(name) if "%" in name or "+" in name else name
        # A kept value holding `=` could smuggle `password=...` past the formatter.
        if key.strip().lower() not in _LOGGED_PARAMS or "=" in value:
            pairs[index] = name + "=***"
    return "&".join(pairs)


# A handler's work for the writer thread: write text to a plain stream, or handle records.
Delivery = Callable[[], None]


class AccessLog:
    """Notes requests on the event loop, makes their lines there every `interval`, and
    leaves the writes to a daemon thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._entries: collections.deque[Entry] = collections.deque()
        self._deliveries: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._lines = _TextLines()

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
        """Start the writer thread, and the line making on the running event loop."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
            self._thread.start()
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._make)

    def stop(self) -> None:
        """Stop the writer and write what is left."""
        thread, self._thread = self._thread, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if thread is not None:
            self._deliveries.put(None)
            thread.join()
        self.flush()

    def flush(self) -> None:
        """Make and write every noted request's line, here and now (at stop, in tests)."""
        while self._entries:
            self._make_chunk(lambda deliver: deliver())

    def _make(self) -> None:
        """On the loop: one chunk of lines, then the next chunk at the next loop turn."""
        self._make_chunk(self._deliveries.put)
        loop = asyncio.get_running_loop()
        if self._entries:
            self._timer = loop.call_soon(self._make)
        else:
            self._timer = loop.call_later(self.interval, self._make)

    def _make_chunk(self, deliver: Callable[[Delivery], None]) -> None:
        entries = self._entries
        chunk: list[Entry] = []
        while entries and len(chunk) < _CHUNK:
            chunk.append(entries.popleft())
        if chunk and logger.isEnabledFor(logging.INFO):
            _emit(chunk, self._lines, deliver)

    def _write(self) -> None:
        while (delivery := self._deliveries.get()) is not None:
            delivery()


def _message(entry: Entry) -> str:
    """The line's message: `client - "METHOD target HTTP/v" status`, the query redacted."""
    _, client, method, path, query, http_version, status = entry
    target = path if not query else f"{path}?{redact_query(query.decode('latin-1'))}"
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


def _emit(entries: list[Entry], lines: _TextLines, deliver: Callable[[Delivery], None]) -> None:
    """Make the entries' lines for every handler of the logger; `deliver` has them written."""
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
                deliver(_writer(plain, text, entries))
                continue
            if records is None:
                records = [_record(entry) for entry in entries]
            if plain is not None:
                try:
                    text = "".join(plain.format(r) + plain.terminator for r in records)
                except Exception:
                    plain.handleError(records[0])
                    continue
                deliver(_writer(plain, text, entries))
                continue
            deliver(_handler(handler, records))
        source = source.parent if source.propagate else None


def _handler(handler: logging.Handler, records: list[logging.LogRecord]) -> Delivery:
    def handle() -> None:
        for record in records:
            handler.handle(record)

    return handle


def _writer(handler: logging.StreamHandler[Any], text: str, entries: list[Entry]) -> Delivery:
    return lambda: _write(handler, text, entries)


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
