"""The API's host, or the callback service's host, is cut off from NATS under load.

Hosts: `core` (nats-server), `a` and `b` (an agent with 4 modems each), and `api` or `cb`.
The API's clients reach it over a front cable of its own, so only its way to NATS is
cut: it must answer 503 with Retry-After while it cannot write a job durably, and never
accept a message it then loses. The callback service's host is cut off from NATS and
from the receiver: every event is called back after the heal (at least once), and no
callback contradicts another.
"""

from __future__ import annotations

import asyncio

from tests.integration.farm import until
from tests.multihost.farm import PASSWORD, USER, Farm
from tests.reliability.ledger import Load

HOST_A = ["lte-1", "lte-2", "lte-3", "lte-4"]
HOST_B = ["lte-5", "lte-6", "lte-7", "lte-8"]
CUT = 10.0


async def test_api_host_cut_from_nats(hosts: Farm) -> None:
    await hosts.start_nats(["core"])
    hosts.start_agent("a", HOST_A)
    hosts.start_agent("b", HOST_B)
    api = await hosts.start_api("api", front=True)
    load = Load.of(api.url, USER, PASSWORD, "apicut", 400)
    running = asyncio.create_task(load.run())
    await until(lambda: load.accepted >= 100, "load under way", 60)
    hosts.lan.cut("api")
    accepted_at_cut = load.accepted
    await asyncio.sleep(CUT)
    accepted_during_cut = load.accepted - accepted_at_cut
    hosts.lan.heal("api")
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, "api host cut")
    refused = books.retried[503]
    print(
        f"[api host cut] cut for {CUT:.0f}s: {refused} answers of 503 (retried), "
        f"{accepted_during_cut} answered 200 after the cut began (each has its result)"
    )
    books.check("api host cut")
    assert books.accepted == 400
    assert not books.failed
    assert not books.unknown
    assert not books.wrong
    assert refused > 0  # the cut was felt, and said
    assert load.unavailable_without_retry_after == 0
    assert not load.server_errors  # nothing but 503 while it could not write
    assert books.unaccepted_results == 0


async def test_callback_host_cut(hosts: Farm) -> None:
    await hosts.start_nats(["core"])
    hosts.start_agent("a", HOST_A)
    hosts.start_agent("b", HOST_B)
    api = await hosts.start_api("core")
    await hosts.start_callback("cb")
    load = Load.of(api.url, USER, PASSWORD, "cbcut", 300)
    running = asyncio.create_task(load.run())
    assert hosts.receiver is not None
    receiver = hosts.receiver
    await until(lambda: len(receiver.ok_ids()) >= 50, "callbacks under way", 60)
    hosts.lan.cut("cb")
    texts = await hosts.inject_inbound(HOST_A + HOST_B, 2, "cb cut")
    await asyncio.sleep(CUT)
    hosts.lan.heal("cb")
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, "callback host cut")  # waits for every result's callback
    books.check("callback host cut")
    assert books.accepted == 300
    assert not books.failed
    assert not books.unknown
    assert not books.wrong
    (await hosts.inbound_books(texts)).check("callback host cut")
    await hosts.until_called_back("inbound")
    called_back = {m for h in receiver.hits for k, m in h.params if k == "message"}
    missing = set(texts) - called_back
    print(f"[callback host cut] inbound called back: {len(texts) - len(missing)} of {len(texts)}")
    assert not missing
