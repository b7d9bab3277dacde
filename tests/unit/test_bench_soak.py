"""The soak's books: what the callback receiver got, against what was sent and injected."""

from __future__ import annotations

import urllib.parse

from bench.bench_soak import INBOUND, REPORT, RESULT, Ledger


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
