"""An agent dies (SIGKILL) or is stopped (SIGTERM) while the farm is under load.

Real processes: nats-server, `smsgate api`, two `smsgate agent`s; the simulator's 16
modems over TCP (`socket://`) stand in for the SIM farm. The load goes through the API.
"""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client
from smsgate import contracts
from smsgate.config import ApiUser, NatsConfig
from smsgate.embedded import EmbeddedNats
from smsgate_sim.simulator import Simulator

from tests.integration.farm import agent_config, start_sim, until
from tests.reliability.ledger import Load, tally, until_results
from tests.reliability.procs import Processes, api_config, wait_ready

USER, PASSWORD = "loaduser", "load-pw-5b1e"


def halves(sim: Simulator) -> tuple[dict[str, str], dict[str, str]]:
    names = sorted(sim.devices, key=lambda n: int(n.split("-")[1]))
    half = len(names) // 2
    return (
        {n: sim.devices[n] for n in names[:half]},
        {n: sim.devices[n] for n in names[half:]},
    )


def sending(sim: Simulator, ports: dict[str, str]) -> bool:
    """A PDU is in one of these modems and its +CMGS has not been given yet."""
    return any(sim.modem(n).stats.pdus_received > sim.modem(n).stats.parts_sent for n in ports)


async def start_farm(
    procs: Processes, nats: NatsConfig, sim: Simulator
) -> tuple[str, dict[str, str], dict[str, str]]:
    host_a, host_b = halves(sim)
    # A killed agent is taken for lost once silent for its lease and holder_timeout.
    for name, devices in (("host-a", host_a), ("host-b", host_b)):
        config = agent_config(
            nats, name, devices, ack_wait=2.0, lease=1.5, holder_timeout=1.0, retries=0
        )
        procs.start("agent", name, config)
    api = procs.start("api", "api", api_config(nats, [ApiUser(name=USER, password=PASSWORD)]))
    await wait_ready(api)
    return api.url, host_a, host_b


async def test_agent_killed_mid_load(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=16, transport="tcp", part_time=(0.03, 0.06), sent_log=5000)
    try:
        url, host_a, host_b = await start_farm(procs, nats, sim)
        load = Load.of(url, USER, PASSWORD, "kill", 1000)
        running = asyncio.create_task(load.run())
        await until(lambda: len(sim.sent()) >= 300 and sending(sim, host_a), "host-a busy", 60)
        procs.services[0].kill()
        killed_at = contracts.utcnow()  # host-a made every result of its own before this
        await asyncio.wait_for(running, 120)
        accepted = [m.id for m in load.messages if m.accepted]
        results = await until_results(js, accepted, 90)
    finally:
        await procs.stop_all()
        await sim.stop()
    books = tally(load.messages, results, sim.sent())
    books.check("agent killed")
    assert books.accepted == 1000
    assert not load.server_errors
    # Nothing failed. At most one message per port of the dead agent has an unknown
    # outcome (`interrupted`): it may have reached the network, and nobody alive knows.
    assert not books.failed
    assert set(books.unknown.values()) == {"interrupted"}
    assert 1 <= len(books.unknown) <= len(host_a)
    interrupted = [r[0] for r in results.values() if r[0].reason == "interrupted"]
    assert all(r.status is contracts.SendStatus.UNKNOWN for r in interrupted)
    assert all(r.port in host_b for r in interrupted)  # found by the survivor on redelivery
    # Everything decided after the kill was decided on the survivor's ports.
    after = [r[0] for r in results.values() if r[0].time > killed_at]
    assert after
    assert all(r.port in host_b for r in after)


async def test_agent_stopped_mid_load(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    # Slow parts, so that SIGTERM finds sends under way.
    sim = await start_sim(ports=8, transport="tcp", part_time=(0.2, 0.4), sent_log=5000)
    try:
        url, host_a, host_b = await start_farm(procs, nats, sim)
        load = Load.of(url, USER, PASSWORD, "term", 200)
        running = asyncio.create_task(load.run())
        await until(lambda: len(sim.sent()) >= 40 and sending(sim, host_a), "host-a busy", 60)
        termed_at = time.time()  # first: a part in flight now is taken after this
        in_flight = {n for n in host_a if sending(sim, {n: ""})}
        exit_code = await procs.services[0].terminate()
        await asyncio.wait_for(running, 120)
        accepted = [m.id for m in load.messages if m.accepted]
        results = await until_results(js, accepted, 90)
    finally:
        await procs.stop_all()
        await sim.stop()
    books = tally(load.messages, results, sim.sent())
    books.check("agent stopped")
    assert exit_code == 0
    assert books.accepted == 200
    assert not load.server_errors
    assert books.sent == 200  # nothing interrupted, nothing failed
    # Each send under way when SIGTERM came was finished, and reported, by the stopping agent.
    finished = [p for p in sim.sent() if p.port in in_flight and p.time >= termed_at]
    assert {p.port for p in finished} == in_flight
    for part in finished:
        [result] = results[part.text]
        assert result.status is contracts.SendStatus.SENT
        assert result.port == part.port
    assert {r[0].port for r in results.values()} & set(host_b)
