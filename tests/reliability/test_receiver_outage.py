"""The callback receiver goes through a bad patch: it refuses connections, then answers 503,
then stops answering at all, then recovers. The real `smsgate callback` process must deliver
every event in the end, and lose none.
"""

from __future__ import annotations

from collections import Counter

from nats.aio.client import Client
from smsgate import contracts, subjects
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats, free_port

from tests.integration.callback_fixtures import (
    Receiver,
    answer_ok,
    callback_config,
    consumer_ready,
    inbound,
    publish,
    report,
    result,
    status,
)
from tests.integration.farm import until
from tests.reliability.ledger import until_async
from tests.reliability.procs import Processes

EVENTS = 300


async def test_receiver_refuses_then_fails_then_hangs_then_recovers(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    receiver = Receiver(port=free_port(), respond=status(503))
    config = callback_config(
        nats, url=receiver.url, timeout=0.5, backoff_initial=0.1, backoff_max=0.5, concurrency=16
    )
    procs.start("callback", "callback", config)
    await consumer_ready(js, "gateway")
    ports = [f"lte-{i}" for i in range(1, 9)]
    events: list[contracts.Event] = []
    for i in range(EVENTS):
        port = ports[i % len(ports)]
        kind = i % 3
        event: contracts.Event = (
            result(port) if kind == 0 else report(port) if kind == 1 else inbound(f"in {i}", port)
        )
        events.append(event)
    ids = await publish(js, events)

    async def delivered_to_server() -> int:
        info = await js.consumer_info(subjects.EVENTS_STREAM, "callback-gateway")
        return int(info.delivered.consumer_seq or 0)

    phases: dict[str, int] = {}
    try:
        # 1. Nothing listens: every event is tried, refused, and offered again.
        seen = 0

        async def tried(times: int) -> bool:
            nonlocal seen
            seen = await delivered_to_server()
            return seen >= times * EVENTS

        await until_async(lambda: tried(2), "every event tried twice while refused", 30)
        phases["refused (deliveries)"] = seen
        # 2. It answers, with 503.
        await receiver.start()
        await until(lambda: len(receiver.hits) >= EVENTS, "503 for every event", 30)
        phases["503"] = len(receiver.hits)
        # 3. It takes requests and never answers them (the client times out).
        receiver.respond = receiver.hang
        hung_from = len(receiver.hits)
        await until(lambda: len(receiver.hits) >= hung_from + 100, "100 timed out", 30)
        phases["timeout"] = len(receiver.hits) - hung_from
        # 4. It recovers.
        receiver.respond = answer_ok
        receiver.release.set()
        recovered_from = len(receiver.hits)
        await until(lambda: set(ids) <= set(receiver.ok_ids()), "every event delivered", 60)
        phases["ok"] = len(receiver.hits) - recovered_from
        dead = (await js.stream_info(subjects.DEAD_STREAM)).state.messages
        alive = procs.services[0].alive
    finally:
        await procs.stop_all()
        await receiver.stop()
    ok = Counter(receiver.ok_ids())
    duplicates = sum(n - 1 for n in ok.values())
    print(
        f"[receiver outage] events={EVENTS} delivered={len(ok)} lost={EVENTS - len(ok)} "
        f"duplicate 2xx={duplicates} dead letters={dead} phases={phases}"
    )
    assert alive
    assert set(ok) == set(ids)
    assert dead == 0
    assert {h.answered for h in receiver.hits} <= {200, 503, 504}
