"""Jobs pinned to a port (`port=`) through the agent's one consumer (issue 21).

Each agent keeps one durable consumer on `SMS_SEND` filtering its ports' subjects.
Whatever consumers the stream held before (one per port from an earlier version, another
agent's that still lists a port that moved, the agent's own with another set of ports),
no pinned job may be stranded, and none sent twice.
"""

from __future__ import annotations

from collections import Counter

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from smsgate import subjects
from smsgate_agent import consumers

from tests.conftest import Bus
from tests.integration.farm import (
    EventTap,
    agent_config,
    agent_running,
    job,
    publish_jobs,
    start_sim,
    until,
)

OUTSIDE = "+4915112345678"


async def consumer_filters(bus: Bus) -> dict[str, frozenset[str]]:
    found = await consumers.consumers(bus.nc, subjects.SEND_STREAM)
    return {c.name: c.filters for c in found}


async def test_one_consumer_per_agent_and_a_busy_port_sends_its_queue(nats_bus: Bus) -> None:
    """Pinned jobs to one slow port come faster than it sends: they wait in its queue
    (and beyond its room, in the stream), and each is sent once."""
    sim = await start_sim(ports=3, part_time=(0.05, 0.1))
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            ids = await publish_jobs(
                nats_bus.nc,
                [job(OUTSIDE, f"q{i}", port="lte-2", status_report=False) for i in range(15)],
            )
            await until(lambda: tap.finished(ids), "the queued pinned jobs", 60)
            filters = await consumer_filters(nats_bus)
    finally:
        await sim.stop()
    assert filters == {
        subjects.SEND_ANY_CONSUMER: frozenset({subjects.SEND_ANY}),
        "send-agent-a": frozenset(subjects.send_port(p) for p in ("lte-1", "lte-2", "lte-3")),
    }
    assert tap.by_port() == {"lte-2": 15}
    assert Counter(p.text for p in sim.sent()) == {f"q{i}": 1 for i in range(15)}


async def old_per_port_consumer(bus: Bus, port: str) -> None:
    """The consumer an agent before issue 21 made for `port`."""
    await bus.js.add_consumer(
        subjects.SEND_STREAM,
        ConsumerConfig(
            durable_name=subjects.send_port_consumer(port),
            filter_subject=subjects.send_port(port),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=-1,
        ),
    )


async def test_an_upgrade_deletes_the_old_per_port_consumers_and_strands_nothing(
    nats_bus: Bus,
) -> None:
    """The previous version's per-port consumers, one with a job handed out and never
    acked (its agent stopped mid-fetch): the new agent deletes them and sends every job."""
    sim = await start_sim(ports=2)
    for port in ("lte-1", "lte-2"):
        await old_per_port_consumer(nats_bus, port)
    await old_per_port_consumer(nats_bus, "lte-9")  # another host's, not upgraded yet
    ids = await publish_jobs(
        nats_bus.nc,
        [job(OUTSIDE, f"u{i}", port=f"lte-{1 + i % 2}", status_report=False) for i in range(6)],
    )
    held = await nats_bus.js.pull_subscribe_bind(
        subjects.send_port_consumer("lte-1"), stream=subjects.SEND_STREAM
    )
    [in_hand] = await held.fetch(1, timeout=5)  # handed out, never acked
    assert in_hand.subject == subjects.send_port("lte-1")
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await until(lambda: tap.finished(ids), "every job of the old consumers", 60)
            filters = await consumer_filters(nats_bus)
    finally:
        await sim.stop()
    assert set(filters) == {subjects.SEND_ANY_CONSUMER, "send-agent-a", "send-port-lte-9"}
    assert Counter(p.text for p in sim.sent()) == {f"u{i}": 1 for i in range(6)}


async def test_a_port_moved_from_another_agent_takes_its_waiting_jobs(nats_bus: Bus) -> None:
    """lte-2 was agent b's (b is gone, its consumer stays): agent a now holds it. b's
    consumer gives lte-2 up, keeps lte-7, and a sends lte-2's jobs queued before."""
    sim = await start_sim(ports=2)
    await nats_bus.js.add_consumer(
        subjects.SEND_STREAM,
        consumers.consumer_config(
            "send-agent-b", consumers.filters_of(["lte-2", "lte-7"]), ack_wait=3.0
        ),
    )
    ids = await publish_jobs(
        nats_bus.nc, [job(OUTSIDE, f"m{i}", port="lte-2", status_report=False) for i in range(3)]
    )
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await until(lambda: tap.finished(ids), "the moved port's jobs", 60)
            filters = await consumer_filters(nats_bus)
    finally:
        await sim.stop()
    assert filters["send-agent-b"] == frozenset({subjects.send_port("lte-7")})
    assert filters["send-agent-a"] == consumers.filters_of(["lte-1", "lte-2"])
    assert tap.by_port() == {"lte-2": 3}


async def test_a_port_added_to_an_agent_gets_the_jobs_queued_before(nats_bus: Bus) -> None:
    """The agent ran with lte-1 alone while jobs for lte-2 were queued (its consumer went
    past them); it starts again with both: its consumer is made anew, and lte-2's jobs go
    out. A filter widened in place would skip them for good."""
    sim = await start_sim(ports=2)
    only_first = {"lte-1": sim.devices["lte-1"]}
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", only_first)):
            later = await publish_jobs(
                nats_bus.nc,
                [job(OUTSIDE, f"s{i}", port="lte-2", status_report=False) for i in range(3)],
            )
            first = await publish_jobs(
                nats_bus.nc,
                [job(OUTSIDE, f"f{i}", port="lte-1", status_report=False) for i in range(3)],
            )
            await until(lambda: tap.finished(first), "lte-1's jobs, queued after lte-2's", 60)
            before = await consumer_filters(nats_bus)
        assert not any(i in tap.results for i in later)
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await until(lambda: tap.finished(later), "lte-2's jobs, queued before it was added")
            after = await consumer_filters(nats_bus)
    finally:
        await sim.stop()
    assert before["send-agent-a"] == consumers.filters_of(["lte-1"])
    assert after["send-agent-a"] == consumers.filters_of(["lte-1", "lte-2"])
    assert tap.by_port() == {"lte-1": 3, "lte-2": 3}
