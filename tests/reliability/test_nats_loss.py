"""NATS goes away under load: the one server is killed and restarted, or a cluster node dies.

Real processes: nats-server (one, or a 3-node cluster with replicas 3), `smsgate api`,
`smsgate agent` and `smsgate callback`; the simulator's modems over TCP; a real HTTP
receiver for the callbacks. The client keeps sending, and sends a refused message again
with the same id until it is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from smsgate import subjects
from smsgate.config import ApiUser, NatsConfig
from smsgate.embedded import EmbeddedCluster, EmbeddedNats

from tests.integration.callback_fixtures import Receiver, callback_config
from tests.integration.farm import agent_config, start_sim, until
from tests.reliability.ledger import Load, provisioned, stream_events, tally, until_results
from tests.reliability.procs import Processes, Service, api_config, wait_ready

USER, PASSWORD = "loaduser", "load-pw-91c3"
# Longer than a JetStream request waits (5 s): publishes under way fail, not just wait.
OUTAGE = 6.0


async def start_services(
    procs: Processes, nats: NatsConfig, devices: dict[str, str], receiver: Receiver
) -> Service:
    procs.start("agent", "agent", agent_config(nats, "host-a", devices, ack_wait=2.0, retries=0))
    procs.start("callback", "callback", callback_config(nats, url=receiver.url))
    api = procs.start("api", "api", api_config(nats, [ApiUser(name=USER, password=PASSWORD)]))
    await wait_ready(api)
    return api


async def callbacks_delivered(js_client: Client, receiver: Receiver, limit: float) -> int:
    """Wait until the receiver has answered 2xx to every result event in the stream."""
    js = js_client.jetstream()
    ids = {e.event_id for _, e in await stream_events(js, "result")}
    await until(lambda: ids <= set(receiver.ok_ids()), "every result called back", limit)
    return len(ids)


async def test_nats_killed_and_restarted_on_the_same_store(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=8, transport="tcp", part_time=(0.03, 0.06), sent_log=5000)
    receiver = Receiver()
    await receiver.start()
    try:
        api = await start_services(procs, nats, sim.devices, receiver)
        load = Load.of(api.url, USER, PASSWORD, "restart", 600)
        running = asyncio.create_task(load.run())
        await until(lambda: len(sim.sent()) >= 150, "load under way", 60)
        server.kill()
        down_at = len(sim.sent())
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(running, 120)
        accepted = [m.id for m in load.messages if m.accepted]
        results = await until_results(js, accepted, 90)
        called_back = await callbacks_delivered(client, receiver, 60)
        await wait_ready(api)  # the API is connected again, streams and all
        alive = {s.name: s.alive for s in procs.services}
    finally:
        await procs.stop_all()
        await receiver.stop()
        await sim.stop()
    books = tally(load.messages, results, sim.sent())
    books.check("nats restarted")
    print(f"[nats restarted] callbacks delivered for {called_back} results")
    assert books.accepted == 600
    # No agent died: nothing may be called `interrupted` (a result the agent held wins).
    assert not books.failed
    assert not books.unknown
    assert not load.server_errors
    assert all(alive.values()), alive
    assert len(sim.sent()) > down_at  # the agent sent again after the restart
    assert called_back >= books.sent + sum(books.failed.values()) + len(books.unknown)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    nodes = EmbeddedCluster(base_dir=tmp_path / "cluster")
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


async def test_cluster_node_lost(cluster: EmbeddedCluster, procs: Processes) -> None:
    nats = NatsConfig(url=cluster.url, replicas=3)
    client = await provisioned(nats, "reliability")
    js = client.jetstream()
    sim = await start_sim(ports=8, transport="tcp", part_time=(0.03, 0.06), sent_log=5000)
    receiver = Receiver()
    await receiver.start()
    try:
        api = await start_services(procs, nats, sim.devices, receiver)
        load = Load.of(api.url, USER, PASSWORD, "node", 600)
        running = asyncio.create_task(load.run())
        await until(lambda: len(sim.sent()) >= 150, "load under way", 60)
        leader = (await js.stream_info(subjects.SEND_STREAM)).cluster
        assert leader is not None
        assert leader.leader is not None
        victim = next(n for n in cluster.nodes if n.store_dir.name == leader.leader)
        victim.kill()
        lost_at = len(sim.sent())
        await asyncio.wait_for(running, 120)
        accepted = [m.id for m in load.messages if m.accepted]
        results = await until_results(js, accepted, 90)
        called_back = await callbacks_delivered(client, receiver, 60)
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"{api.url}/readyz")).status_code
        alive = {s.name: s.alive for s in procs.services}
    finally:
        await procs.stop_all()
        await receiver.stop()
        await sim.stop()
        with contextlib.suppress(Exception):
            await client.close()
    books = tally(load.messages, results, sim.sent())
    books.check(f"cluster node {leader.leader} lost")
    assert books.accepted == 600
    assert not books.failed
    assert not books.unknown
    assert not load.server_errors
    assert all(alive.values()), alive
    assert ready == 200
    assert len(sim.sent()) > lost_at
    assert called_back >= books.sent + sum(books.failed.values()) + len(books.unknown)
