"""An agent's host is cut off (its cable pulled) under load, with a send in flight.

Hosts: `core` (nats-server, api, callback), `a` and `b` (an agent with 4 modems each).
A cut shorter than `ack_wait` leaves the job with host a; a cut of twice `ack_wait`
makes JetStream hand host a's job to host b, which must leave it to its holder. Either
way host a finishes the send it started and its result is the only one: the stream, the
stored status and the callbacks agree, and nothing is called `interrupted`.
"""

from __future__ import annotations

import asyncio

from tests.integration.farm import until
from tests.multihost.farm import ACK_WAIT, PASSWORD, USER, Farm, in_flight
from tests.reliability.ledger import Load

HOST_A = ["lte-1", "lte-2", "lte-3", "lte-4"]
HOST_B = ["lte-5", "lte-6", "lte-7", "lte-8"]


async def cut_agent_host(hosts: Farm, scenario: str, cut_for: float, count: int) -> None:
    await hosts.start_nats(["core"])
    hosts.start_agent("a", HOST_A)
    hosts.start_agent("b", HOST_B)
    api = await hosts.start_api("core")
    await hosts.start_callback("core")
    load = Load.of(api.url, USER, PASSWORD, scenario.replace(" ", "")[:6], count)
    running = asyncio.create_task(load.run())
    sim = hosts.sim
    await until(
        lambda: len(sim.sent()) >= count // 5 and bool(in_flight(sim, HOST_A)),
        "a send on host a",
        60,
    )
    hosts.lan.cut("a")
    sending = in_flight(sim, HOST_A)
    await asyncio.sleep(cut_for)
    hosts.lan.heal("a")
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, scenario)
    print(f"[{scenario}] cut for {cut_for:.1f}s with sends in flight on {sorted(sending)}")
    books.check(scenario)
    assert books.accepted == count
    assert not books.wrong, books.wrong
    assert not books.failed, books.failed


async def test_agent_host_cut_shorter_than_ack_wait(hosts: Farm) -> None:
    await cut_agent_host(hosts, "cut short", ACK_WAIT / 2, 300)


async def test_agent_host_cut_twice_ack_wait(hosts: Farm) -> None:
    await cut_agent_host(hosts, "cut twice ack_wait", 2 * ACK_WAIT, 300)
