"""The soak's books: what the callback receiver got, against what was sent and injected."""

from __future__ import annotations

import urllib.parse

from smsgate_history.metrics import HistoryMetrics

from bench.bench_soak import INBOUND, REPORT, RESULT, Ledger, Minute, within_page_cache
from bench.bus_memory import BusMemory
from bench.common import Use
from bench.history_memory import HistoryMemory, parse


def callback(**params: str) -> bytes:
    return ("/sms?" + urllib.parse.urlencode(params)).encode()


def test_lost_duplicated_and_unknown_callbacks_are_counted_by_kind() -> None:
    ledger = Ledger(accepted={"a", "b", "c"}, injected={"inbound 0", "inbound 1"})
    for target in (
        callback(type=RESULT, id="a", status="Sent"),
        callback(type=RESULT, id="b", status="Sent"),
        callback(type=RESULT, id="b", status="Sent"),  # twice
        callback(type=RESULT, id="z", status="Sent"),  # never sent
        callback(type=REPORT, id="a", status="Message received on handset"),
        callback(type="", id="", message="inbound 1", status=""),
    ):
        ledger.on_callback(0.0, target)

    assert ledger.books(RESULT, ledger.accepted) == {
        "expected": 3,
        "received": 4,
        "lost": 1,  # c
        "duplicated": 1,  # b
        "unknown": 1,  # z
    }
    assert ledger.books(REPORT, ledger.accepted)["lost"] == 2
    assert ledger.books(INBOUND, ledger.injected)["lost"] == 1
    assert ledger.statuses[RESULT, "Sent"] == 4
    assert not ledger.settled()


def test_settled_once_every_kind_has_a_callback_for_each() -> None:
    ledger = Ledger(accepted={"a"}, injected={"inbound 0"})
    ledger.on_callback(0.0, callback(type=RESULT, id="a", status="Sent"))
    ledger.on_callback(0.0, callback(type=REPORT, id="a", status="Message received on handset"))
    assert not ledger.settled()
    ledger.on_callback(0.0, callback(type="", message="inbound 0"))
    assert ledger.settled()


MIB = 2**20


def minute(
    history_rss_mib: float,
    page_cache_mib: float = 0.0,
    heap_free_mib: float = 0.0,
    sqlite_other_mib: float = 0.0,
) -> Minute:
    bus = BusMemory(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ())
    history = HistoryMemory(
        page_cache=int(page_cache_mib * MIB),
        sqlite_other=int(sqlite_other_mib * MIB),
        heap_in_use=0,
        heap_free=int(heap_free_mib * MIB),
    )
    return Minute(
        elapsed=0.0,
        load="",
        accepted=0,
        results=0,
        reports=0,
        inbound=0,
        use={"history-store": Use(int(history_rss_mib * MIB), 0, 0.0)},
        streams={"KV_sms_messages": (5, 0), "SMS_EVENTS": (9, 0), "KV_sms_sending": (10, 0)},
        bus=bus,
        history_bytes=0,
        history=history,
    )


def test_the_history_stores_growth_counts_as_its_page_cache_as_sqlite_and_malloc_count_it() -> None:
    # Run 9's shape: 33 MiB more RSS for 28 MiB more cache and 5 MiB more holes between its pages.
    assert within_page_cache([minute(37.3, 3.2, 2.0), minute(70.5, 31.6, 6.9)])
    # Anything else that grows counts: statements, Python's objects, the heap in use.
    assert not within_page_cache([minute(37.3, 3.2, 2.0), minute(75.5, 31.6, 6.9)])
    assert not within_page_cache([minute(37.3, 3.2, 2.0, 0.2), minute(70.5, 3.2, 2.0, 33.4)])
    # Free space that shrank excuses nothing.
    assert not within_page_cache([minute(37.3, 3.2, 9.0), minute(70.5, 28.6, 2.0)])


def test_the_history_stores_memory_is_read_from_its_metrics() -> None:
    metrics = HistoryMetrics()
    text = metrics.render(applied=12)
    assert "smsgate_history_events_total 12\n" in text
    read = parse(text)
    # This process's own SQLite and glibc heap, as the store would serve them.
    assert read == HistoryMemory(
        page_cache=int(metrics.sqlite.get("page_cache")),
        sqlite_other=int(metrics.sqlite.get("other")),
        heap_in_use=int(metrics.heap.get("in_use")),
        heap_free=int(metrics.heap.get("free")),
    )
    assert read.heap_in_use > 0


def test_the_kv_keys_are_the_buckets_messages() -> None:
    assert minute(0.0, 0.0).kv_keys == 15
