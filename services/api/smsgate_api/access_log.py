"""The access log: one line per request, written off the event loop, in batches.

uvicorn's own access log builds a log record, formats it and writes and flushes it on
the event loop for every request; at the gateway's rates that is a large share of a
request's cost (see bench/RESULTS.md). Here the loop only notes the request (a tuple
appended to a deque); a writer thread turns what gathered into log records every
`interval` seconds and hands each plain stream handler one write of all of them.
Lines read as uvicorn's did, on the logger `smsgate.access`, and every query value is
masked except harmless ones, so no password, number or text reaches a log line.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from urllib.parse import unquote_plus

from smsgate.logs import RedactedRecord
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
        # A kept value holding `=` could smuggle `password=...` past the formatter.
        if eq and (unquote_plus(name).strip().lower() not in _LOGGED_PARAMS or "=" in value):
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

    def note(self, scope: Scope, message: Message) -> None:
        """Called with each `http.response.start`: its status and the request's scope."""
        self._entries.append(
            (
                time.time(),
                scope.get("client"),
                scope["method"],
                scope["path"],
                scope["query_string"],
                scope["http_version"],
                message["status"],
            )
        )

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
            records: list[logging.LogRecord] = []
            while entries and len(records) < _CHUNK:
                entry = entries.popleft()  # atomic: the loop may append meanwhile
                if enabled:
                    records.append(_record(entry))
            if records:
                _emit(records)
            # Hand the GIL back between chunks: the event loop waits for none of this.
            time.sleep(0)


def _record(entry: Entry) -> logging.LogRecord:
    created, client, method, path, query, http_version, status = entry
    target = path if not query else redact_target(f"{path}?{query.decode('latin-1')}")
    where = f"{client[0]}:{client[1]}" if client else "-"
    args = (where, method, target, http_version, status)
    record = RedactedRecord(logger.name, logging.INFO, __file__, 0, _FORMAT, args, None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def _emit(records: list[logging.LogRecord]) -> None:
    source: logging.Logger | None = logger
    while source is not None:
        for handler in source.handlers:
            if records[0].levelno < handler.level:
                continue
            stream = getattr(handler, "stream", None)
            if (
                isinstance(handler, _PLAIN_STREAMS)
                and type(handler) in _PLAIN_STREAMS
                and not handler.filters
                and stream is not None
            ):
                try:
                    text = "".join(handler.format(r) + handler.terminator for r in records)
                    with handler.lock or threading.Lock():
                        stream.write(text)
                        handler.flush()
                except Exception:
                    # As StreamHandler.emit does: a broken stream (a closed pipe, a full
                    # disk) is reported and skipped, never the end of the writer thread,
                    # which would leave every later request to pile up in memory.
                    handler.handleError(records[0])
                continue
            for record in records:
                handler.handle(record)
        source = source.parent if source.propagate else None
