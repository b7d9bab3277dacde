"""How delivery reports reach the agent (`report_routing` of a port), with the real agent
and the simulator over ptys: stored on the SIM by default; routed directly (+CDS) and
acknowledged with AT+CNMA under AT+CSMS=1 when a port asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from smsgate import contracts
from smsgate.config import Config
from smsgate_sim.simulator import Simulator

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


def routing(config: Config, how: str) -> Config:
    ports = [msgspec.structs.replace(p, report_routing=how) for p in config.agent.ports]
    return msgspec.structs.replace(config, agent=msgspec.structs.replace(config.agent, ports=ports))


@asynccontextmanager
async def one_port(bus: Bus, **settings: object) -> AsyncIterator[tuple[Simulator, EventTap]]:
    """A simulator of one port and a tap on the bus's events, the simulator stopped after."""
    sim = await start_sim(ports=1, **settings)
    tap = EventTap()
    await tap.start(bus.nc)
    try:
        yield sim, tap
    finally:
        await sim.stop()


async def test_direct_reports_are_matched_and_each_acknowledged(nats_bus: Bus) -> None:
    async with one_port(nats_bus) as (sim, tap):
        modem = sim.modem("lte-1")
        config = routing(agent_config(nats_bus.config, "a", sim.devices), "direct")
        async with agent_running(config):
            ids = await publish_jobs(nats_bus.nc, [job(OUTSIDE, f"m{i}") for i in range(3)])
            await until(lambda: len(tap.reports) == 3, "three reports")
            await until(lambda: modem.stats.acknowledged == 3, "three AT+CNMA")
    assert sorted(r.id for r in tap.reports) == sorted(ids)
    assert {r.state for r in tap.reports} == {contracts.DeliveryState.DELIVERED}
    assert (modem.csms, modem.cnmi[3]) == (1, 1)
    assert modem.stats.unacknowledged == 0


async def test_reports_stay_stored_unless_a_port_asks_for_direct_ones(nats_bus: Bus) -> None:
    async with one_port(nats_bus) as (sim, tap):
        modem = sim.modem("lte-1")
        async with agent_running(agent_config(nats_bus.config, "a", sim.devices)):
            await publish_jobs(nats_bus.nc, [job(OUTSIDE, "stored")])
            await until(lambda: len(tap.reports) == 1, "the report")
    assert (modem.csms, modem.cnmi[3]) == (0, 2)
    assert modem.stats.acknowledged == 0


async def test_a_direct_report_refused_while_the_agent_was_away_comes_with_the_smscs_retry(
    nats_bus: Bus,
) -> None:
    """The agent stops before its report comes: the modem refuses the +CDS nobody
    acknowledged and stops routing reports; the next agent routes them again at start-up,
    and the SMSC's retry (here sent by hand) is matched through the ledger."""
    settings = {"report_delay": 3.0, "cnma_timeout": 0.2, "smsc_retry": 3600.0}
    async with one_port(nats_bus, **settings) as (sim, tap):
        modem = sim.modem("lte-1")
        config = routing(agent_config(nats_bus.config, "a", sim.devices), "direct")
        async with agent_running(config):
            [message_id] = await publish_jobs(nats_bus.nc, [job(OUTSIDE, "while away")])
            await until(lambda: message_id in tap.results, "the result")
        await until(lambda: modem.stats.unacknowledged == 1, "the refused +CDS")
        assert modem.cnmi[3] == 0
        assert tap.reports == []
        async with agent_running(config):
            await until(lambda: modem.cnmi[3] == 1, "reports routed again")
            sim.network.flush(modem)  # the SMSC's retry
            await until(lambda: len(tap.reports) == 1, "the report")
            await until(lambda: modem.stats.acknowledged == 1, "its AT+CNMA")
    [report] = tap.reports
    assert (report.id, report.state) == (message_id, contracts.DeliveryState.DELIVERED)
