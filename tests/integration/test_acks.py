"""Publishes with acks on one inbox, against a real nats-server, through the shortcuts the
installed nats-py allows (framed here, replies handed on inline) and through its public
calls: the same outcomes either way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js.errors import APIError, NoStreamResponseError
from smsgate import bus, subjects
from smsgate.acks import AckPublisher
from smsgate.bus import CREATE_ONLY
from smsgate.protocol_reader import LeanParser

from tests.conftest import Bus


@pytest.fixture(params=["shortcuts", "public", "agent"])
async def acks(request: pytest.FixtureRequest, nats_bus: Bus) -> AsyncIterator[AckPublisher]:
    """Through the shortcuts, through nats-py's public calls, and on a connection as the
    agent makes it (its writes gathered for a window, read by the lean reader)."""
    nc = nats_bus.nc
    if request.param == "agent":
        nc = await bus.connect(nats_bus.config, write_window=0.003, lean_reader=True)
        assert isinstance(nc._ps, LeanParser)
    publisher = AckPublisher(nc)
    await publisher.start()
    if request.param == "public":
        publisher.fast = False
    else:
        assert publisher.fast, "the installed nats-py lacks what the shortcuts use"
    yield publisher
    await publisher.stop()
    if nc is not nats_bus.nc:
        await bus.close(nc)


async def test_acks_carry_the_sequence_and_headers_reach_the_stream(
    nats_bus: Bus, acks: AckPublisher
) -> None:
    subject = subjects.event("result", "lte-1")
    first = await (await acks.publish(subject, b"{}", {"Nats-Msg-Id": "m1:result"}))
    again = await (await acks.publish(subject, b"{}", {"Nats-Msg-Id": "m1:result"}))
    assert first.seq > 0
    assert not first.duplicate
    assert again.duplicate
    stored = await (await acks.last_message(subjects.EVENTS_STREAM, subject))
    assert stored is not None
    assert stored.hdrs is not None
    assert b"Nats-Msg-Id: m1:result" in stored.hdrs
    assert stored.seq == first.seq


async def test_a_refused_write_fails_its_future_and_later_ones_still_resolve(
    acks: AckPublisher,
) -> None:
    key = subjects.REPORTS_KV_PREFIX + "s.i1.9"
    await (await acks.publish(key, b"[]", dict(CREATE_ONLY)))
    with pytest.raises(APIError):
        await (await acks.publish(key, b"[1]", dict(CREATE_ONLY)))
    assert (await (await acks.publish(key, b"[2]", {}))).seq > 0
    assert acks.in_flight == 0


async def test_many_in_flight_each_resolve_once(acks: AckPublisher) -> None:
    futures = [
        await acks.publish(subjects.REPORTS_KV_PREFIX + f"m.1.k{i}", b"x" * i, {})
        for i in range(300)
    ]
    seqs = [(await future).seq for future in futures]
    assert len(set(seqs)) == 300
    assert seqs == sorted(seqs)


async def test_a_header_value_cannot_break_its_frame(acks: AckPublisher) -> None:
    subject = subjects.event("result", "lte-2")
    ack = await (await acks.publish(subject, b"{}", {"Nats-Msg-Id": "m2\r\nX-Evil: 1"}))
    stored = await (await acks.last_message(subjects.EVENTS_STREAM, subject))
    assert stored is not None
    assert stored.seq == ack.seq
    assert stored.hdrs is not None
    lines = stored.hdrs.split(b"\r\n")
    assert lines[1].startswith(b"Nats-Msg-Id: m2")
    assert lines[2:] == [b"", b""]  # one header line, then the blank line: nothing injected


async def test_a_publish_no_stream_takes_fails_as_no_responders(acks: AckPublisher) -> None:
    """The server's `503` status for a subject no stream listens on ends the wait at once;
    a read of a stream that is not there fails with JetStream's error."""
    with pytest.raises(NoStreamResponseError):
        await (await acks.publish("nostream.here", b"{}", {}))
    with pytest.raises(APIError) as refused:
        await (await acks.last_message("NO_SUCH_STREAM", "nostream.here"))
    assert refused.value.err_code == 10059  # stream not found
    assert acks.in_flight == 0


async def test_unacked_writes_reach_the_stream(nats_bus: Bus, acks: AckPublisher) -> None:
    subject = subjects.event("result", "lte-3")
    assert acks.publish_unacked_now(subject, b"{}", {"Nats-Msg-Id": "m3:result"}) is acks.fast
    await acks.publish_unacked(subject, b"{}", {"Nats-Msg-Id": "m4:result"})
    ack = await (await acks.publish(subject, b"{}", {"Nats-Msg-Id": "m5:result"}))
    stored = await (await acks.last_message(subjects.EVENTS_STREAM, subject))
    assert stored is not None
    assert stored.seq == ack.seq
    info = await nats_bus.js.stream_info(subjects.EVENTS_STREAM)
    assert info.state.messages == (3 if acks.fast else 2)


async def test_a_publish_framed_at_once_is_acked_like_any(
    nats_bus: Bus, acks: AckPublisher
) -> None:
    subject = subjects.event("result", "lte-4")
    future = acks.publish_now(subject, b"{}", {"Nats-Msg-Id": "m6:result"})
    if not acks.fast:  # nothing sent: the caller publishes through nats-py instead
        assert future is None
        assert (await nats_bus.js.stream_info(subjects.EVENTS_STREAM)).state.messages == 0
        return
    assert future is not None
    ack = await future
    again = acks.publish_now(subject, b"{}", {"Nats-Msg-Id": "m6:result"})
    assert again is not None
    assert (await again).duplicate
    stored = await (await acks.last_message(subjects.EVENTS_STREAM, subject))
    assert stored is not None
    assert stored.seq == ack.seq


async def test_a_publish_framed_at_once_is_not_sent_without_a_connection(
    nats_bus: Bus,
) -> None:
    publisher = AckPublisher(nats_bus.nc)
    await publisher.start()
    try:
        assert publisher.fast
        await nats_bus.nc.close()
        assert publisher.publish_now(subjects.event("result", "lte-5"), b"{}", {}) is None
        assert publisher.in_flight == 0
    finally:
        await publisher.stop()


async def test_stopped_publishers_give_every_message_back_to_nats_py(nats_bus: Bus) -> None:
    """Each publisher takes its inbox's replies from nats-py's parser; stopped (in any
    order), it takes none: the client's own hand-off is back, other subscriptions unharmed."""
    nc = nats_bus.nc
    first, second = AckPublisher(nc), AckPublisher(nc)
    await first.start()
    await second.start()
    await first.stop()  # the earlier one first: the later one's hook still wraps it
    assert (await (await second.publish(subjects.event("result", "lte-4"), b"{}", {}))).seq
    reply = await nc.request("$JS.API.INFO", b"", timeout=5)
    assert b"account" in reply.data or b"memory" in reply.data
    await second.stop()
    assert "_process_msg" not in vars(nc)
    assert (await nc.request("$JS.API.INFO", b"", timeout=5)).data
