"""An agent's host is cut off (its cable pulled) under load, with a send in flight.

Hosts: `core` (nats-server, api, callback), `a` and `b` (an agent with 4 modems each).
A cut shorter than `ack_wait` leaves the job with host a; a cut of twice `ack_wait`
makes JetStream hand host a's job to host b, which must leave it to its holder. Either
way host a finishes the send it started and its result is the only one: the stream, the
stored status and the callbacks agree, and nothing is called `interrupted`. A host that
never comes back leaves the sends it held `unknown`: never failed, never sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import msgspec
from smsgate import subjects
from smsgate_agent.liveness import Claim

from tests.integration.farm import until
from tests.multihost.farm import ACK_WAIT, PASSWORD, USER, Farm, in_flight
from tests.reliability.ledger import Load
from tests.reliability.procs import Service

HOST_A = ["lte-1", "lte-2", "lte-3", "lte-4"]
HOST_B = ["lte-5", "lte-6", "lte-7", "lte-8"]


LONG_CUT = 30.0  # "10 minutes": 10 x ack_wait, 5 x the events' duplicate window


async def under_load(
    hosts: Farm, tag: str, count: int, *, reports: bool = False, **host_b: object
) -> tuple[Service, asyncio.Task[None], Load]:
    """NATS, api and callback on `core`, agents on `a` and `b` (`host_b`: b's settings);
    the load running, and a send under way on host a. Host a's agent, the load, its task."""
    await hosts.start_nats(["core"])
    agent_a = hosts.start_agent("a", HOST_A)
    hosts.start_agent("b", HOST_B, **host_b)
    api = await hosts.start_api("core")
    await hosts.start_callback("core")
    load = Load.of(api.url, USER, PASSWORD, tag, count)
    load.delivery_report = reports
    running = asyncio.create_task(load.run())
    sim = hosts.sim
    await until(
        lambda: len(sim.sent()) >= count // 5 and bool(in_flight(sim, HOST_A)),
        "a send on host a",
        60,
    )
    return agent_a, running, load


async def cut_agent_host(
    hosts: Farm, scenario: str, cut_for: float, count: int, *, inbound: int = 0
) -> None:
    """Load through the API; cut host a with a send in flight; heal; the books.

    `inbound`: SMS sent to each host's modems while host a is cut (delivery reports are
    asked for too): each must reach the stream once, after the heal.
    """
    tag = scenario.replace(" ", "")[:6]
    _, running, load = await under_load(hosts, tag, count, reports=bool(inbound))
    sim = hosts.sim
    hosts.lan.cut("a")
    sending = in_flight(sim, HOST_A)
    texts = await hosts.inject_inbound(HOST_A + HOST_B, inbound, scenario)
    await asyncio.sleep(cut_for)
    hosts.lan.heal("a")
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, scenario)
    print(f"[{scenario}] cut for {cut_for:.1f}s with sends in flight on {sorted(sending)}")
    books.check(scenario)
    assert books.accepted == count
    assert not books.wrong, books.wrong
    assert not books.failed, books.failed
    assert not books.unknown, books.unknown
    if inbound:
        (await hosts.inbound_books(texts)).check(scenario)
        (await hosts.report_books(load)).check(scenario)


async def test_agent_host_cut_shorter_than_ack_wait(hosts: Farm) -> None:
    await cut_agent_host(hosts, "cut short", ACK_WAIT / 2, 300)


async def test_agent_host_cut_twice_ack_wait(hosts: Farm) -> None:
    await cut_agent_host(hosts, "cut twice ack_wait", 2 * ACK_WAIT, 300)


async def test_agent_host_cut_for_long_with_inbound_and_reports(hosts: Farm) -> None:
    await cut_agent_host(hosts, "cut long", LONG_CUT, 300, inbound=5)


async def test_agent_restarted_during_a_cut(hosts: Farm) -> None:
    """The agent is stopped while cut off (its results only in its spool), and its next
    run publishes them: the spool outlives the process."""
    agent_a, running, load = await under_load(hosts, "restart", 300)
    sim = hosts.sim
    hosts.lan.cut("a")
    await until(lambda: not in_flight(sim, HOST_A), "host a's sends finished", 30)
    exit_code = await agent_a.terminate()
    hosts.lan.heal("a")
    agent_a.start()
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, "restart during cut")
    spooled = agent_a.log().count("kept in the spool")
    replayed = agent_a.log().count(":result published")
    print(f"[restart during cut] exit {exit_code}; results spooled {spooled}, replayed {replayed}")
    books.check("restart during cut")
    assert exit_code == 0
    assert replayed >= 1  # the next run published what the stopped one kept
    assert books.accepted == 300
    assert not books.wrong, books.wrong
    assert not books.failed, books.failed
    assert not books.unknown, books.unknown


async def test_agent_host_never_comes_back(hosts: Farm) -> None:
    """Host a is cut for good with sends in flight: host b takes over its work, and once
    a's lease has run out and `holder_timeout` passed, b decides the sends a held
    `unknown` (`interrupted`): a's modems may have given them to the network, and nobody
    still reachable can tell. Not one of them is reported failed, or sent."""
    agent_a, running, load = await under_load(hosts, "gone", 300, holder_timeout=5.0)
    sim = hosts.sim
    hosts.lan.cut("a")
    cut_at = time.time()
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, "host never comes back")
    holders = await claim_holders(hosts, books.unknown)
    agent_a.kill()
    books.check("host never comes back")
    late = {p.text for p in sim.sent() if p.port in HOST_A and p.time >= cut_at}
    print(
        f"[host never comes back] unknown {len(books.unknown)}; "
        f"sent by host a's modems after the cut: {len(late)}; wrong {len(books.wrong)}"
    )
    assert books.accepted == 300
    assert not books.wrong, books.wrong
    assert not books.failed, books.failed
    assert set(books.unknown.values()) <= {"interrupted"}
    # Only the sends host a held at the cut (at most one per port) ...
    assert len(books.unknown) <= len(HOST_A)
    assert {c.agent for c in holders.values()} <= {"a"}
    assert all(c.time <= cut_at for c in holders.values())
    # ... and every one its modems gave the network after the cut is among them: `unknown`,
    # where `failed` would have been wrong.
    assert late <= set(books.unknown)


async def claim_holders(hosts: Farm, ids: Iterable[str]) -> dict[str, Claim]:
    """The send claim standing for each message: who held it, since when."""
    assert hosts.client is not None
    sending = await hosts.client.jetstream().key_value(subjects.SENDING_BUCKET)
    return {
        i: msgspec.json.decode(
            (await sending.get(subjects.message_key(i))).value or b"", type=Claim
        )
        for i in ids
    }
