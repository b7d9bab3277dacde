"""Ports bound by IMEI or ICCID: found at start, again after a USB re-enumeration while the
agent runs, and an ICCID-bound port follows its SIM into another modem."""

from __future__ import annotations

from pathlib import Path

import msgspec
from smsgate import contracts
from smsgate.config import AgentPort

from tests.conftest import Bus
from tests.integration.farm import (
    EventTap,
    agent_config,
    agent_running,
    job,
    publish_jobs,
    stored_state,
    until,
)

from .farm import start_sim

OUTSIDE = "+4915112345678"
ABSENT_IMEI = "356900000000999"


def latest(tap: EventTap, port: str) -> contracts.PortState | None:
    states = [e.state for e in tap.ports if e.port == port]
    return states[-1] if states else None


def ready(tap: EventTap, port: str) -> bool:
    state = latest(tap, port)
    return state is not None and state.status in (
        contracts.PortStatus.READY,
        contracts.PortStatus.BUSY,
    )


async def send_on(bus: Bus, tap: EventTap, port: str, text: str) -> None:
    ids = await publish_jobs(bus.nc, [job(OUTSIDE, text, port=port, status_report=False)])
    await until(lambda: tap.finished(ids), f"the send on {port}")
    assert tap.results[ids[0]][0].status is contracts.SendStatus.SENT


async def test_identity_bound_ports_follow_modem_and_sim(nats_bus: Bus) -> None:
    sim = await start_sim(ports=3, reset_time=0.1)
    devices = f"{Path(sim.devices['lte-1']).parent}/*"
    imei_of_3 = sim.modem("lte-3").imei
    iccid_in_1 = sim.modem("lte-1").sim.iccid
    ports = [
        AgentPort(name="alpha", device=devices, imei=imei_of_3),
        AgentPort(name="beta", device=devices, iccid=iccid_in_1),
        AgentPort(name="gamma", device=devices, imei=ABSENT_IMEI),
    ]
    config = agent_config(nats_bus.config, "a", {})
    config = msgspec.structs.replace(
        config, agent=msgspec.structs.replace(config.agent, ports=ports)
    )
    tap = EventTap()
    await tap.start(nats_bus.nc)
    try:
        async with agent_running(config):
            await until(lambda: ready(tap, "alpha") and ready(tap, "beta"), "alpha and beta up")
            alpha = latest(tap, "alpha")
            assert alpha is not None
            assert alpha.device == sim.devices["lte-3"]
            # Not there: shown down, saying what it looks for, and still looking.
            gamma = await stored_state(nats_bus, "gamma", lambda s: s.last_error is not None)
            assert gamma.status is contracts.PortStatus.DOWN
            assert f"no modem with imei {ABSENT_IMEI}" in (gamma.last_error or "")

            # A USB re-enumeration while the agent runs: lte-3 comes back as ttyUSB9.
            await sim.unplug("lte-3")
            await until(lambda: not ready(tap, "alpha"), "alpha down after the unplug")
            await sim.replug("lte-3", device_name="ttyUSB9")
            await until(
                lambda: (
                    ready(tap, "alpha")
                    and (latest(tap, "alpha") or alpha).device.endswith("/ttyUSB9")
                ),
                "alpha found again on its new device",
                60,
            )
            await send_on(nats_bus, tap, "alpha", "after re-enumeration")

            # beta's SIM moves into lte-2: the port follows the SIM, its identity kept.
            await sim.swap_sims("lte-1", "lte-2")
            await until(
                lambda: (
                    ready(tap, "beta")
                    and (latest(tap, "beta") or alpha).device == sim.devices["lte-2"]
                ),
                "beta found with its SIM in the other modem",
                60,
            )
            beta = latest(tap, "beta")
            assert beta is not None
            assert beta.iccid == iccid_in_1
            assert beta.imei == sim.modem("lte-2").imei
            await send_on(nats_bus, tap, "beta", "after the SIM moved")
    finally:
        await sim.stop()
    sent = {p.text: p.port for p in sim.sent()}
    assert sent == {"after re-enumeration": "lte-3", "after the SIM moved": "lte-2"}
