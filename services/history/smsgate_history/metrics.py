"""The history store's metrics (served on `history.metrics_listen`): what it folded in, and
what its memory is made of, read when scraped (smsgate.history.memory)."""

from __future__ import annotations

from dataclasses import dataclass, field

from smsgate.history import memory
from smsgate.metrics import Counter, Gauge, render


@dataclass
class HistoryMetrics:
    events: Counter = field(
        default_factory=lambda: Counter(
            "smsgate_history_events_total",
            "Event records folded into the store since start (a journal batch: its records).",
        )
    )
    sqlite: Gauge = field(
        default_factory=lambda: Gauge(
            "smsgate_history_sqlite_memory_bytes",
            "SQLite's heap in this process, by part: page_cache (cached pages with SQLite's "
            "header for each, up to the writer's cache_size), other (prepared statements, "
            "schema, lookaside, and the first pages of each cache, allocated together).",
            ("part",),
        )
    )
    heap: Gauge = field(
        default_factory=lambda: Gauge(
            "smsgate_history_heap_bytes",
            "The C heap's arenas (glibc), by state: in_use, free (held by the process, "
            "holes between longer-lived allocations).",
            ("state",),
        )
    )

    def render(self, applied: int) -> str:
        """The metrics in the Prometheus text format: `applied` events so far, memory as it
        is now."""
        self.events.inc(amount=applied - self.events.get())
        families: list[Counter] = [self.events]
        found = memory.sqlite_memory()
        if found is not None:
            self.sqlite.set(found.page_cache, "page_cache")
            self.sqlite.set(found.used - found.page_cache, "other")
            families.append(self.sqlite)
        held = memory.heap()
        if held is not None:
            self.heap.set(held.in_use, "in_use")
            self.heap.set(held.free, "free")
            families.append(self.heap)
        return render(families)
