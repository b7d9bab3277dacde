import datetime as dt

from smsgate_agent.reassembly import InboundPart, Reassembler

SCTS = dt.datetime(2019, 8, 2, 14, 35, 40, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def part(
    seq: int, total: int = 3, *, ref: int = 7, sender: str = "10086", at: float = 0.0
) -> InboundPart:
    return InboundPart(
        sender=sender,
        text=f"<{seq}>",
        smsc_time=SCTS,
        reference=ref,
        total=total,
        sequence=seq,
        received=at,
    )


def test_single_part_passes_straight_through() -> None:
    joined = Reassembler().add(part(1, total=1))
    assert joined is not None
    assert joined.complete
    assert joined.text == "<1>"


def test_parts_join_in_order_whatever_the_arrival_order() -> None:
    r = Reassembler()
    assert r.add(part(3)) is None
    assert r.add(part(1)) is None
    assert r.add(part(1)) is None  # a duplicate (URC lost, sweep re-read) changes nothing
    joined = r.add(part(2))
    assert joined is not None
    assert joined.complete
    assert joined.text == "<1><2><3>"
    assert r.pending == {}


def test_same_reference_from_different_senders_stays_apart() -> None:
    r = Reassembler()
    r.add(part(1, total=2, sender="a"))
    r.add(part(1, total=2, sender="b"))
    joined = r.add(part(2, total=2, sender="b"))
    assert joined is not None
    assert joined.first.sender == "b"
    assert len(r.pending) == 1


def test_incomplete_message_expires_as_it_is() -> None:
    r = Reassembler(timeout=600)
    r.add(part(1, at=100))
    r.add(part(3, at=200))
    assert r.expire(699) == []
    [joined] = r.expire(700)
    assert not joined.complete
    assert joined.text == "<1><3>"
    assert r.pending == {}
