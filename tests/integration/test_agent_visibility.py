"""What the agent shows of its ports: a pinned backlog, the error behind a park, its metrics,
and retries that are what the README says (issue 16, items 9, 10 and 14)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from smsgate import contracts, subjects
from smsgate.config import SendPolicy
from smsgate_agent.agent import Agent

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


async def port_state(bus: Bus, name: str) -> contracts.PortState:
    entry = await bus.buckets.ports.get(name)
    return contracts.decode(entry.value or b"", contracts.PortState)


async def queue_is(bus: Bus, name: str, queue: int) -> None:
    """Until the port's stored state shows `queue` jobs (its heartbeat writes it)."""
    seen: list[int] = []
    async with asyncio.timeout(30):
        while (state := await port_state(bus, name)).queue != queue:
            seen.append(state.queue)
            await asyncio.sleep(0.05)
    assert state.queue == queue, seen


async def command(bus: Bus, port: str, action: str) -> contracts.ControlReply:
    reply = await bus.nc.request(
        subjects.port_control(port),
        contracts.encode(contracts.PortCommand(action=action)),  # type: ignore[arg-type]
        timeout=5,
    )
    return contracts.decode(reply.data, contracts.ControlReply)


async def test_a_pinned_backlog_shows_in_the_port_queue(nats_bus: Bus) -> None:
    sim = await start_sim(ports=2)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await until(lambda: len({e.port for e in tap.ports}) == 2, "ports ready", 30)
            assert (await command(nats_bus, "lte-2", "drain")).ok
            ids = await publish_jobs(
                nats_bus.nc, [job(OUTSIDE, f"held {i}", port="lte-2") for i in range(3)]
            )
            await queue_is(nats_bus, "lte-2", 3)
            assert not tap.finished(ids)  # drained: nothing of them was sent
            assert (await port_state(nats_bus, "lte-1")).queue == 0
            assert (await command(nats_bus, "lte-2", "enable")).ok
            await until(lambda: tap.finished(ids), "the backlog sent after enable")
            await queue_is(nats_bus, "lte-2", 0)
    finally:
        await sim.stop()


async def test_a_parked_port_keeps_the_error_that_parked_it(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1)
    sim.set_fault("lte-1", send_error=21, send_error_count=2)  # permanent: no retry
    policy = SendPolicy(min_interval=0, jitter=0, park_after_failures=2, park_seconds=300)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        config = agent_config(nats_bus.config, "a", sim.devices, policy=policy)
        async with agent_running(config):
            ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, f"f{i}") for i in range(2)])
            await until(lambda: tap.finished(ids), "two failures")
            await until(lambda: any(e.change == "parked" for e in tap.ports), "parked", 30)
            state = await port_state(nats_bus, "lte-1")
            assert state.status is contracts.PortStatus.PARKED
            assert state.last_error is not None
            assert state.last_error.startswith("+CMS ERROR: 21"), state.last_error
    finally:
        await sim.stop()


@pytest.mark.parametrize(
    ("code", "attempts", "delays"),
    [
        (38, 3, ["1.0", "2.0"]),  # temporary: agent.retries (2 here), back-off 1, 2 s
        (500, 2, ["1.0"]),  # unclear: one more try
    ],
)
async def test_retries_are_agent_retries_with_back_off_1_2_4(
    nats_bus: Bus, caplog: pytest.LogCaptureFixture, code: int, attempts: int, delays: list[str]
) -> None:
    sim = await start_sim(ports=1)
    sim.set_fault("lte-1", send_error=code, send_error_count=100)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    caplog.set_level(logging.INFO, logger="smsgate")
    try:
        config = agent_config(nats_bus.config, "a", sim.devices, retries=2)
        async with agent_running(config):
            [message_id] = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "x", port="lte-1")])
            await until(lambda: tap.finished([message_id]), "the result", 60)
    finally:
        await sim.stop()
    [result] = tap.results[message_id]
    assert result.status is contracts.SendStatus.FAILED
    assert result.reason is not None
    assert result.reason.startswith(f"+CMS ERROR: {code}")
    assert sim.modem("lte-1").stats.pdus_received == attempts
    waits = re.findall(r"trying again in ([0-9.]+)s", caplog.text)
    assert waits == delays, caplog.text


async def test_agent_metrics_count_reports_errors_and_restarts(nats_bus: Bus) -> None:
    sim = await start_sim(ports=1)
    tap = EventTap()
    await tap.start(nats_bus.nc)
    config = agent_config(nats_bus.config, "a", sim.devices)
    agent = Agent(config)
    try:
        async with agent_running(config, agent=agent):
            await until(lambda: any(e.change == "ready" for e in tap.ports), "ready", 30)
            [sent] = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "reported")])
            await until(lambda: bool(tap.reports), "the delivery report")
            sim.set_fault("lte-1", send_error=21, send_error_count=1)
            [failed] = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "refused")])
            await until(lambda: tap.finished([sent, failed]), "both results")
            await sim.unplug("lte-1")
            await until(lambda: any(e.change == "down" for e in tap.ports), "down", 30)
            await sim.replug("lte-1")
            restarted = 'smsgate_agent_modem_restarts_total{port="lte-1"} 1'
            await until(lambda: restarted in agent.metrics_text(), "a restart", 60)
            await until(lambda: any(e.change == "ready" for e in tap.ports[-1:]), "back", 60)
            text = agent.metrics_text()
    finally:
        await sim.stop()
    lines = text.splitlines()
    assert 'smsgate_agent_sent_total{port="lte-1"} 1' in lines
    assert 'smsgate_agent_failed_total{port="lte-1"} 1' in lines
    assert 'smsgate_agent_reports_total{port="lte-1",state="delivered"} 1' in lines
    assert 'smsgate_agent_at_errors_total{port="lte-1"} 1' in lines
    assert 'smsgate_agent_modem_restarts_total{port="lte-1"} 1' in lines
    assert 'smsgate_agent_port_status{port="lte-1",status="ready"} 1' in lines
