"""NATS as a 3-node cluster across hosts: a node cut off, and a rolling upgrade.

Hosts: `n1`, `n2`, `n3` (a nats-server each, routes between them, every stream and bucket
with 3 replicas), `core` (api and callback), `a` and `b` (an agent with 4 modems each).
Every service is given the three nodes' URLs.
"""

from __future__ import annotations

import asyncio
import time

from smsgate import contracts, subjects

from tests.integration.farm import until
from tests.multihost.farm import PASSWORD, USER, Farm
from tests.reliability.ledger import Load, port_state, until_async

HOST_A = ["lte-1", "lte-2", "lte-3", "lte-4"]
HOST_B = ["lte-5", "lte-6", "lte-7", "lte-8"]
NODES = ["n1", "n2", "n3"]
STREAMS = [
    subjects.SEND_STREAM,
    subjects.EVENTS_STREAM,
    f"KV_{subjects.SENDING_BUCKET}",
    f"KV_{subjects.MESSAGES_BUCKET}",
    f"KV_{subjects.AGENTS_BUCKET}",
]


async def start_cluster_farm(hosts: Farm, tag: str, count: int, pause: float) -> Load:
    await hosts.start_nats(NODES)
    hosts.start_agent("a", HOST_A)
    hosts.start_agent("b", HOST_B)
    api = await hosts.start_api("core")
    await hosts.start_callback("core")
    load = Load.of(api.url, USER, PASSWORD, tag, count)
    load.concurrency, load.pause = 4, pause
    return load


async def healthy(hosts: Farm, limit: float = 60.0) -> None:
    """Until every stream has a leader and all its replicas are current."""
    assert hosts.client is not None
    js = hosts.client.jetstream()

    async def all_current() -> bool:
        for stream in STREAMS:
            cluster = (await js.stream_info(stream)).cluster
            if cluster is None or cluster.leader is None:
                return False
            if any(not r.current or r.offline for r in cluster.replicas or []):
                return False
        return True

    await until_async(all_current, "every stream led, every replica current", limit)


async def ports_up(hosts: Farm, ports: list[str], since: float, limit: float = 60.0) -> None:
    """Until each port's state was written after `since` (its agent runs again)."""
    assert hosts.client is not None
    kv = await hosts.client.jetstream().key_value(subjects.PORTS_BUCKET)

    async def written() -> bool:
        for port in ports:
            state = port_state((await kv.get(port)).value)
            if state.status not in (contracts.PortStatus.READY, contracts.PortStatus.BUSY):
                return False
            if state.updated.timestamp() <= since:
                return False
        return True

    await until_async(written, f"ports {ports} up again", limit)


async def test_minority_nats_node_cut(hosts: Farm) -> None:
    load = await start_cluster_farm(hosts, "minor", 400, 0.0)
    assert hosts.client is not None
    js = hosts.client.jetstream()
    running = asyncio.create_task(load.run())
    await until(lambda: len(hosts.sim.sent()) >= 80, "load under way", 60)
    leader = (await js.stream_info(subjects.SEND_STREAM)).cluster
    assert leader is not None
    assert leader.leader in NODES
    victim = leader.leader
    hosts.lan.cut(victim)  # the node leading SMS_SEND, alone on the minority side
    await asyncio.sleep(10.0)
    hosts.lan.heal(victim)
    await asyncio.wait_for(running, 120)
    books = await hosts.books(load, f"nats node {victim} cut")
    books.check(f"nats node {victim} cut")
    assert books.accepted == 400
    assert not books.failed
    assert not books.unknown
    assert not books.wrong
    assert not load.server_errors
    await healthy(hosts)  # the node caught up again


async def test_rolling_upgrade(hosts: Farm) -> None:
    load = await start_cluster_farm(hosts, "roll", 800, 0.2)
    running = asyncio.create_task(load.run())
    await until(lambda: len(hosts.sim.sent()) >= 40, "load under way", 60)
    loop = asyncio.get_running_loop()
    for host, ports in (("a", HOST_A), ("b", HOST_B)):
        since = loop.time()
        stopped_at = time.time()
        await hosts.restart(hosts.agent(host))
        await ports_up(hosts, ports, stopped_at)
        print(f"[rolling upgrade] agent {host} restarted in {loop.time() - since:.1f}s")
    for node in NODES:
        since = loop.time()
        await hosts.restart_node(node)
        await healthy(hosts)
        print(f"[rolling upgrade] nats node {node} restarted in {loop.time() - since:.1f}s")
    assert not running.done()  # the load spanned every restart
    await asyncio.wait_for(running, 180)
    books = await hosts.books(load, "rolling upgrade")
    books.check("rolling upgrade")
    assert books.accepted == 800
    assert not books.failed
    assert not books.unknown
    assert not books.wrong
    assert not load.server_errors
