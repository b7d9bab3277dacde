"""The soak's books: what the callback receiver got, against what was sent and injected."""

from __future__ import annotations

import urllib.parse

from bench.bench_soak import INBOUND, REPORT, RESULT, Ledger, Minute, within_page_cache
from bench.bus_memory import BusMemory
from bench.common import Use


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


def minute(history_rss_mib: float, database_mib: float) -> Minute:
    bus = BusMemory(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ())
    return Minute(
        elapsed=0.0,
        load="",
        accepted=0,
        results=0,
        reports=0,
        inbound=0,
        use={"history-store": Use(int(history_rss_mib * 2**20), 0, 0.0)},
        streams={"KV_sms_messages": (5, 0), "SMS_EVENTS": (9, 0), "KV_sms_sending": (10, 0)},
        bus=bus,
        history_bytes=int(database_mib * 2**20),
    )


def test_the_history_stores_growth_counts_as_its_page_cache_only_within_the_database() -> None:
    assert within_page_cache([minute(37.0, 3.0), minute(55.0, 18.0)])
    assert not within_page_cache([minute(37.0, 3.0), minute(60.0, 18.0)])  # more than it
    # The cache stops at its ceiling, however large the database grows.
    assert not within_page_cache([minute(37.0, 3.0), minute(120.0, 500.0)])


def test_the_kv_keys_are_the_buckets_messages() -> None:
    assert minute(0.0, 0.0).kv_keys == 15
