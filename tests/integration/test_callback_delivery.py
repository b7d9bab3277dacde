"""Delivery guarantees with a real receiver: restarts, per-port order, isolation, signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import Counter

import pytest
from smsgate import contracts, subjects
from starlette.responses import PlainTextResponse, Response

from tests.conftest import Bus
from tests.integration.callback_fixtures import (
    Hit,
    Receiver,
    Running,
    answer_ok,
    callback_config,
    consumer_ready,
    inbound,
    publish,
    result,
    running,
    until,
)

pytestmark = pytest.mark.timeout(60)


async def test_a_restart_mid_run_redelivers_only_unacknowledged_events(nats_bus: Bus) -> None:
    async def slow(hit: Hit) -> Response:
        await asyncio.sleep(0.02)  # keeps several deliveries in flight when the stop comes
        return PlainTextResponse("OK")

    async with Receiver(respond=slow) as receiver:
        config = callback_config(nats_bus.config, url=receiver.url, concurrency=4)
        events = [inbound(f"message {i}", f"lte-{i % 4 + 1}") for i in range(60)]
        ids = await publish(nats_bus.js, events)
        first = Running(config)
        first.start()
        await until(lambda: len(receiver.ok_ids()) >= 15, "a quarter delivered")
        await first.halt()
        acked = {r.event_id for r in first.acted("delivered")}
        released = {r.event_id for r in first.acted("released")}
        assert acked
        assert len(acked) < len(ids)

        async with running(config) as second:
            await until(lambda: set(receiver.ok_ids()) == set(ids), "every event delivered")
        assert not second.acted("released")

    received = Counter(hit.event_id for hit in receiver.hits)
    again = {event_id for event_id, count in received.items() if count > 1}
    assert set(received) == set(ids)  # nothing lost
    assert not again & acked  # an acknowledged event is never delivered again
    assert again <= released  # only events held (unacknowledged) at the stop come back
    assert not {r.event_id for r in second.acted("delivered")} & acked


async def test_acks_leave_while_the_service_runs_not_only_at_its_stop(nats_bus: Bus) -> None:
    async with Receiver() as receiver:
        config = callback_config(nats_bus.config, url=receiver.url, concurrency=3)
        ids = await publish(nats_bus.js, [result(f"lte-{i % 5 + 1}") for i in range(50)])
        async with running(config) as service:
            await until(lambda: set(receiver.ok_ids()) == set(ids), "every event delivered")

            async def settled() -> bool:
                info = await nats_bus.js.consumer_info(subjects.EVENTS_STREAM, "callback-gateway")
                return bool(info.num_ack_pending == 0 and info.num_pending == 0)

            async with asyncio.timeout(5):
                # The server's count, read over the bus: polling is the only way to see it.
                while not await settled():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert len(service.acted("delivered")) == len(ids)
    assert sorted(hit.event_id for hit in receiver.hits) == sorted(ids)  # each exactly once


async def test_ordered_webhook_keeps_port_order_while_other_ports_flow(nats_bus: Bus) -> None:
    lte2 = [inbound(f"two {i}", "lte-2") for i in range(5)]
    lte1 = [inbound(f"one {i}", "lte-1") for i in range(5)]

    async def respond(hit: Hit) -> Response:
        # lte-1's first event fails until every lte-2 event got through: were lanes not
        # independent, lte-2 would wait behind it and the test would hit its bound.
        lte2_done = sum(1 for h in receiver.hits if h.answered == 200 and h.event_id in two)
        if hit.event_id == lte1[0].event_id and lte2_done < len(lte2):
            return PlainTextResponse("busy", status_code=500)
        return PlainTextResponse("OK")

    two = {e.event_id for e in lte2}
    async with Receiver(respond=respond) as receiver:
        config = callback_config(nats_bus.config, url=receiver.url, ordered=True)
        async with running(config) as service:
            await publish(nats_bus.js, [e for pair in zip(lte1, lte2, strict=True) for e in pair])
            await until(lambda: len(receiver.ok_ids()) == 10, "all ten delivered")
    ok = receiver.ok_ids()
    assert [i for i in ok if i in two] == [e.event_id for e in lte2]
    assert [i for i in ok if i not in two] == [e.event_id for e in lte1]
    assert any(r.action == "retry" and r.event_id == lte1[0].event_id for r in service.records)
    # While lte-1's head was retried in process, none of lte-1's later events was tried.
    first_ok = next(
        n
        for n, h in enumerate(receiver.hits)
        if h.event_id == lte1[0].event_id and h.answered == 200
    )
    later = {e.event_id for e in lte1[1:]}
    assert not any(h.event_id in later for h in receiver.hits[:first_ok])


async def test_a_stuck_receiver_does_not_delay_another_webhook(nats_bus: Bus) -> None:
    async with Receiver() as stuck, Receiver() as healthy:
        stuck.respond = stuck.hang
        config = callback_config(
            nats_bus.config,
            url=stuck.url,
            timeout=30.0,
            concurrency=2,
            webhooks=[{"name": "healthy", "url": healthy.url, "format": "json"}],
        )
        async with running(config):
            ids = await publish(nats_bus.js, [result(f"lte-{i}") for i in range(1, 11)])
            await until(lambda: len(stuck.hits) == 2, "the stuck webhook's two slots taken")
            await until(lambda: set(healthy.ok_ids()) == set(ids), "healthy got everything")
            assert len(stuck.hits) == 2  # the stuck one holds its two slots, nothing more
            stuck.respond = answer_ok
            stuck.release.set()
            await until(lambda: set(stuck.ok_ids()) == set(ids), "the stuck one catches up")


def _verify_from_the_docs(secret: bytes, hit: Hit, now: float) -> bool:
    """A receiver's check, written from README's 'Verifying signatures' alone."""
    timestamp = hit.headers["x-smsgate-timestamp"]
    content = hit.query if hit.method == "GET" else hit.body
    mac = hmac.new(secret, timestamp.encode() + b"." + content, hashlib.sha256).hexdigest()
    given = hit.headers["x-smsgate-signature"]
    fresh = abs(now - int(timestamp)) <= 300
    return fresh and any(hmac.compare_digest(f"v1={mac}", s.strip()) for s in given.split(","))


async def test_signatures_verify_in_a_receiver_written_from_the_docs(nats_bus: Bus) -> None:
    async with Receiver() as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        config = callback_config(
            nats_bus.config,
            url=receiver.url + "?token=a b",
            secret="gateway-key",
            webhooks=[
                {"name": "json", "url": f"{base}/j", "format": "json", "secret": "json-key"},
                {"name": "form", "url": f"{base}/f", "format": "form", "secret": "form-key"},
                {"name": "plain", "url": f"{base}/p", "format": "json"},
            ],
        )
        events: list[contracts.Event] = [result(), inbound("签名 & signature + ✓")]
        async with running(config):
            await publish(nats_bus.js, events)
            await until(lambda: len(receiver.ok_ids()) == 8, "two events, four webhooks")
    keys = {"/api/http-sms/receive": b"gateway-key", "/j": b"json-key", "/f": b"form-key"}
    now = time.time()
    for hit in receiver.hits:
        if hit.path == "/p":
            assert "x-smsgate-signature" not in hit.headers
            continue
        assert _verify_from_the_docs(keys[hit.path], hit, now), hit
        assert not _verify_from_the_docs(b"wrong-key", hit, now)
        tampered = Hit(hit.method, hit.path, hit.query + b"&x=1", hit.headers, hit.body + b" ")
        assert not _verify_from_the_docs(keys[hit.path], tampered, now)
        assert hit.headers["x-smsgate-event-id"] in {e.event_id for e in events}


async def test_a_new_webhook_starts_now_and_keeps_its_place_across_config_changes(
    nats_bus: Bus,
) -> None:
    async with Receiver() as receiver:
        before = await publish(nats_bus.js, [result("lte-1")])
        config = callback_config(
            nats_bus.config, url=receiver.url, start="new", inbound=False, reports=False
        )
        async with running(config):
            await consumer_ready(nats_bus.js, "gateway")
            [sent] = await publish(nats_bus.js, [result("lte-2")])
            await until(lambda: receiver.ok_ids() == [sent], "the event after the start")
        # While stopped: more events, and the config now asks for inbound SMS as well.
        later = await publish(nats_bus.js, [inbound("while stopped"), result("lte-3")])
        config = callback_config(nats_bus.config, url=receiver.url, start="new")
        async with running(config):
            await until(lambda: len(receiver.ok_ids()) == 3, "the events sent while stopped")
    assert receiver.ok_ids()[1:] == later
    assert before[0] not in receiver.ok_ids()
