"""A port's liveness through its agent's lease, as the API shows it (smsgate.port_liveness).

A real nats-server, the API app in process, agents (in process, or as a process to
SIGKILL) over simulated modems. An agent writes a port's state when it changes; its
lease, renewed every heartbeat, keeps the unchanged state standing.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from smsgate import contracts, port_liveness, subjects
from smsgate.contracts import Lease, PortState, PortStatus
from smsgate_agent.agent import Agent

from tests.conftest import Bus
from tests.integration.api_fixtures import (
    ADMIN_TOKEN,
    Api,
    api_config,
    decode_json,
    port_state,
    running_api,
)
from tests.integration.farm import AgentProcess, agent_config, agent_running, start_sim
from tests.reliability.ledger import until_async

BEAT = 0.5  # agent.heartbeat in these tests (agent_config's)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def shown(api: Api) -> dict[str, Any]:
    """Port name: its entry in `GET /api/v1/ports`, as a user of the API sees it."""
    answer = await api.client.get("/api/v1/ports", headers=ADMIN)
    assert answer.status_code == 200
    return {p["port"]: p for p in decode_json(answer.content)["ports"]}


async def statuses(api: Api, names: list[str]) -> list[str]:
    ports = await shown(api)
    return [ports[n]["status"] if n in ports else "absent" for n in names]


async def stored(bus: Bus, name: str) -> tuple[PortState, int]:
    """The port's state as its agent last wrote it, and its revision in the bucket."""
    entry = await bus.buckets.ports.get(name)
    assert entry.revision is not None
    return contracts.decode(entry.value or b"", PortState), entry.revision


async def lease_of(bus: Bus, agent: str) -> Lease:
    entry = await bus.buckets.agents.get(subjects.message_key(agent))
    return msgspec.json.decode(entry.value or b"", type=Lease)


async def until_statuses(api: Api, names: list[str], status: str, what: str) -> None:
    async def reached() -> bool:
        return await statuses(api, names) == [status] * len(names)

    await until_async(reached, what, 30)


async def test_a_live_agents_unchanged_ports_stay_up_without_rewrites(nats_bus: Bus) -> None:
    sim = await start_sim(ports=2)
    names = sorted(sim.devices)
    try:
        async with (
            running_api(nats_bus, api_config(nats_bus.config)) as api,
            agent_running(agent_config(nats_bus.config, "steady", sim.devices)),
        ):
            await until_statuses(api, names, "ready", "the ports up")
            before = {n: await stored(nats_bus, n) for n in names}
            renewed = (await lease_of(nats_bus, "steady")).renewed

            # Ten heartbeats: the lease renewed each, no state rewritten.
            async def ten_beats_on() -> bool:
                return (await lease_of(nats_bus, "steady")).renewed > renewed + 10 * BEAT

            await until_async(ten_beats_on, "ten more heartbeats", 30)
            after = {n: await stored(nats_bus, n) for n in names}
            ports = await shown(api)
    finally:
        await sim.stop()
    for name in names:
        state, revision = after[name]
        assert revision == before[name][1], f"{name} was rewritten without a change"
        assert state.boot is not None
        # Written more than three heartbeats ago: only the lease keeps it up.
        assert renewed + 10 * BEAT - state.updated.timestamp() > 3 * BEAT
        assert ports[name]["status"] == "ready"


async def test_a_dead_agents_ports_are_shown_down(nats_bus: Bus, tmp_path: Path) -> None:
    sim = await start_sim(ports=2, transport="tcp")
    names = sorted(sim.devices)
    doomed = AgentProcess(agent_config(nats_bus.config, "doomed", sim.devices), tmp_path)
    try:
        async with running_api(nats_bus, api_config(nats_bus.config)) as api:
            doomed.start()
            await until_statuses(api, names, "ready", "the doomed agent's ports up")
            doomed.kill()
            killed_at = time.time()
            await until_statuses(api, names, "down", "the dead agent's ports shown down")
            metrics = (await api.client.get("/metrics")).text
    finally:
        if doomed.process is not None and doomed.process.poll() is None:
            doomed.kill()
        await sim.stop()
    assert 'smsgate_ports{status="down"} 2' in metrics
    lease = await lease_of(nats_bus, "doomed")
    for name in names:
        state, _ = await stored(nats_bus, name)
        assert state.status is PortStatus.READY  # what it last wrote: the lease decides
        # Down no later than three heartbeats after the agent was last heard, as when
        # every state was rewritten each beat.
        assert port_liveness.live_until(state, lease) <= killed_at + 3 * BEAT


async def test_a_restarted_agent_without_a_port_leaves_it_down(nats_bus: Bus) -> None:
    sim = await start_sim(ports=2)
    names = sorted(sim.devices)
    kept = {names[0]: sim.devices[names[0]]}
    try:
        async with running_api(nats_bus, api_config(nats_bus.config)) as api:
            async with agent_running(agent_config(nats_bus.config, "host-a", sim.devices)):
                await until_statuses(api, names, "ready", "both ports up")
            # The final states say down; write the dropped port's last one back as `ready`,
            # as a kill before the final write would have left it.
            left, _ = await stored(nats_bus, names[1])
            ready = msgspec.structs.replace(left, status=PortStatus.READY)
            await nats_bus.buckets.ports.put(names[1], contracts.encode(ready))
            async with agent_running(agent_config(nats_bus.config, "host-a", kept)):
                await until_statuses(api, names[:1], "ready", "the kept port up")

                async def dropped_down() -> bool:
                    return await statuses(api, names[1:]) == ["down"]

                # The new run's lease names another boot: it vouches for its own ports only.
                await until_async(dropped_down, "the dropped port shown down", 30)
    finally:
        await sim.stop()


async def test_readers_follow_an_older_agent_that_rewrites_every_beat(nats_bus: Bus) -> None:
    # A rolling upgrade: host-old runs an agent of before leases kept ports standing. It
    # rewrites each state every beat, names no run in it, and renews a lease of its own.
    sim = await start_sim(ports=1)
    [new_port] = sim.devices
    old_lease = Lease(agent="host-a", boot="old-run", renewed=time.time(), lease=15.0)
    try:
        async with (
            running_api(nats_bus, api_config(nats_bus.config)) as api,
            agent_running(agent_config(nats_bus.config, "host-new", sim.devices)),
        ):
            await nats_bus.buckets.agents.put("host-a", msgspec.json.encode(old_lease))
            await api.set_ports(port_state("old-1", heartbeat=BEAT))
            await until_statuses(api, ["old-1", new_port], "ready", "both agents' ports up")
            # The old agent stops: its lease is renewed still (it is fresh), but its
            # state names no run, so only the state's own write counts.
            renewed = msgspec.structs.replace(old_lease, renewed=time.time() + 60)
            await nats_bus.buckets.agents.put("host-a", msgspec.json.encode(renewed))
            await until_statuses(api, ["old-1"], "down", "the old agent's port down")
            assert await statuses(api, [new_port]) == ["ready"]
    finally:
        await sim.stop()


@pytest.mark.parametrize(("renewed_ago", "taken"), [(1.0, False), (3600.0, True)])
async def test_a_port_held_by_a_live_agent_is_refused_by_its_lease(
    nats_bus: Bus, renewed_ago: float, taken: bool
) -> None:
    # lte-1's state was written an hour ago by `other`, which has not changed it since.
    # Whether `other` still holds it is its lease's to say.
    sim = await start_sim(ports=2)
    held = msgspec.structs.replace(
        port_state("lte-1", heartbeat=BEAT),
        agent="other",
        boot="other-run",
        updated=contracts.utcnow() - dt.timedelta(hours=1),
    )
    await nats_bus.buckets.ports.put("lte-1", contracts.encode(held))
    lease = Lease(agent="other", boot="other-run", renewed=time.time() - renewed_ago, lease=15)
    await nats_bus.buckets.agents.put("other", msgspec.json.encode(lease))
    agent = Agent(agent_config(nats_bus.config, "mine", sim.devices))
    try:
        async with agent_running(agent.config, agent=agent):

            async def lte_2_up() -> bool:
                state, _ = await stored(nats_bus, "lte-2")
                return state.agent == "mine" and state.status is PortStatus.READY

            await until_async(lte_2_up, "lte-2 up on this agent", 30)
            ports = [worker.name for worker in agent.workers]
            holder = (await stored(nats_bus, "lte-1"))[0].agent
    finally:
        await sim.stop()
    assert ports == (["lte-1", "lte-2"] if taken else ["lte-2"])
    assert holder == ("mine" if taken else "other")
