"""What a running `smsgate history-store`'s memory is made of, read from its own metrics.

The store started with `history.metrics_listen` serves, at each scrape, SQLite's own count
of its heap (the page cache, each page with SQLite's header for it, and the rest) and
glibc's of its arenas (in use, and free but held): smsgate_history.metrics.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

_SAMPLE = re.compile(r'^(smsgate_history_\w+)\{\w+="(\w+)"\} (\S+)$', re.M)


@dataclass(frozen=True)
class HistoryMemory:
    """One reading, in bytes (0 where the store could not read it)."""

    page_cache: int  # SQLite's page cache
    sqlite_other: int  # SQLite's heap besides: statements, schema, lookaside
    heap_in_use: int  # glibc's arenas: allocated
    heap_free: int  # glibc's arenas: free, held by the process


def parse(text: str) -> HistoryMemory:
    """The memory gauges of a scrape of the history store's /metrics."""
    found = {(name, label): int(float(value)) for name, label, value in _SAMPLE.findall(text)}
    sqlite, heap = "smsgate_history_sqlite_memory_bytes", "smsgate_history_heap_bytes"
    return HistoryMemory(
        page_cache=found.get((sqlite, "page_cache"), 0),
        sqlite_other=found.get((sqlite, "other"), 0),
        heap_in_use=found.get((heap, "in_use"), 0),
        heap_free=found.get((heap, "free"), 0),
    )


def read(url: str) -> HistoryMemory:
    """Scrape `url` (the store's /metrics)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return parse(response.read().decode())
