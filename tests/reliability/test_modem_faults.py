"""Modems misbehave under load: a hang, an unplugged cable, a burst of +CMS errors, a SIM
off the network, line noise and a storm of unsolicited lines, all at once on some ports.

Real processes (`smsgate api`, `smsgate agent`, nats-server); the simulator's modems over
TCP. The healthy ports carry the load, the faulty ones are taken out of service and come
back once their fault clears, and every accepted message ends in exactly one result.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from nats.aio.client import Client
from nats.aio.msg import Msg
from smsgate import contracts, subjects
from smsgate.config import ApiUser, NatsConfig, SendPolicy
from smsgate.embedded import EmbeddedNats

from tests.integration.farm import agent_config, start_sim, until
from tests.reliability.ledger import (
    Load,
    Message,
    port_state,
    tally,
    until_async,
    until_results,
)
from tests.reliability.procs import Processes, api_config, wait_ports_known, wait_ready

USER, PASSWORD = "loaduser", "load-pw-0c77"
HUNG, UNPLUGGED, ERRORS, REFUSED, OFF_NETWORK = "lte-1", "lte-2", "lte-3", "lte-6", "lte-7"
NOISY, STORMY = "lte-4", "lte-5"
TAKEN_OUT = {HUNG, UNPLUGGED, OFF_NETWORK}  # down until the fault clears
FAULTY = {*TAKEN_OUT, ERRORS}
REJECTED = 21  # +CMS ERROR: 21, short message transfer rejected: permanent
CMS_500 = "+CMS ERROR: 500 (unknown error)"
PINNED = 8  # messages a customer pinned to the port with the error burst


async def test_modem_faults_under_load(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    kv = await js.key_value(subjects.PORTS_BUCKET)
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=16, transport="tcp", part_time=(0.03, 0.06), sent_log=5000)
    sim.set_fault(NOISY, garbage_rate=0.3)
    sim.set_fault(STORMY, urc_rate=0.6)
    # Each refused try costs the port seconds (the modem's retry pause). Jobs pinned to it by
    # a customer keep it trying (and failing) whatever the rest of the load does.
    sim.set_fault(ERRORS, send_error=500, send_error_rate=1.0)
    policy = SendPolicy(min_interval=0, jitter=0, park_after_failures=3, park_seconds=2.0)
    agent = agent_config(
        nats, "host-a", sim.devices, policy=policy, ack_wait=2.0, retries=0, send_timeout=3.0
    )

    async def status_of(port: str) -> contracts.PortStatus:
        return port_state((await kv.get(port)).value).status

    parked: set[str] = set()

    async def on_port_event(msg: Msg) -> None:
        event = contracts.decode_event(msg.data)
        if isinstance(event, contracts.PortEvent) and event.change == "parked":
            parked.add(event.port)

    watch = await client.subscribe(subjects.event_filter("port"), cb=on_port_event)
    try:
        procs.start("agent", "agent", agent)
        api = procs.start("api", "api", api_config(nats, [ApiUser(name=USER, password=PASSWORD)]))
        await wait_ready(api)
        await wait_ports_known(api, [ERRORS], auth=(USER, PASSWORD))
        load = Load.of(api.url, USER, PASSWORD, "fault", 800)
        load.messages[:0] = [Message(f"pinned{i:02d}", port=ERRORS) for i in range(PINNED)]
        running = asyncio.create_task(load.run())
        await until(lambda: len(sim.sent()) >= 100, "load under way", 60)
        sim.set_fault(HUNG, hung=True)
        await sim.unplug(UNPLUGGED)
        sim.set_fault(REFUSED, send_error=REJECTED, send_error_count=5)
        sim.set_fault(OFF_NETWORK, deregistered=True)

        async def taken_out() -> bool:
            states = {p: await status_of(p) for p in TAKEN_OUT}
            return all(s is not contracts.PortStatus.READY for s in states.values())

        await until_async(taken_out, "faulty ports out of service", 60)
        await until(lambda: ERRORS in parked, "the port with the error burst parked", 60)
        # The faults clear: the cable goes back in, the modem answers again, the network is back.
        await sim.replug(UNPLUGGED)
        sim.set_fault(HUNG, hung=False)
        sim.set_fault(ERRORS, send_error_rate=0.0)
        sim.set_fault(OFF_NETWORK, deregistered=False)
        await asyncio.wait_for(running, 120)
        accepted = [m.id for m in load.messages if m.accepted]
        results = await until_results(js, accepted, 90)

        async def recovered() -> bool:
            states = [await status_of(p) for p in FAULTY]
            return all(s in (contracts.PortStatus.READY, contracts.PortStatus.BUSY) for s in states)

        await until_async(recovered, "faulty ports back in service", 60)
        alive = procs.services[0].alive
    finally:
        await watch.unsubscribe()
        await procs.stop_all()
        await sim.stop()
    books = tally(load.messages, results, sim.sent())
    books.check("modem faults")
    by_port = Counter(r[0].port for r in results.values() if r[0].status == "sent")
    print(f"[modem faults] sent per port: {dict(sorted(by_port.items()))}")
    assert alive
    assert books.accepted == 800 + PINNED
    assert not load.server_errors
    failed = [r[0] for r in results.values() if r[0].status == "failed"]
    assert all(r.reason for r in failed)
    # Only a message whose part was refused for good fails; one whose PDU the hung modem
    # took is `unknown` (it may be on the network), never `failed`.
    unexpected = [(r.port, r.reason) for r in failed if r.port not in (REFUSED, ERRORS)]
    assert all(r.startswith(contracts.OUTCOME_UNKNOWN) for r in books.unknown.values())
    # A pinned job cannot go elsewhere: during the burst it fails, with the modem's reason.
    pinned = [r for r in failed if r.port == ERRORS and r.id.startswith("pinned")]
    assert all(r.reason == CMS_500 for r in pinned)
    assert not unexpected
    assert sum(1 for r in failed if r.port == REFUSED) <= 5
    # Noise and chatter cost nothing; the healthy ports carried most of the load.
    assert by_port[NOISY] > 0
    assert by_port[STORMY] > 0
    healthy = sum(n for p, n in by_port.items() if p not in FAULTY | {REFUSED})
    assert healthy >= 0.7 * books.sent
    print(f"[modem faults] parked on the way: {sorted(parked)}")
