"""One simulator with a port per modem profile, one agent over all of them, a tap on events.

Every check runs on all ports at once (a "round"); each test item then asserts its own
port's outcome. That keeps the whole matrix to one farm start and a few seconds a check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from smsgate import contracts, subjects
from smsgate.config import NatsConfig
from smsgate_sim import PROFILES, Simulator

from tests.conftest import fresh_bus
from tests.integration.farm import EventTap, agent_config, agent_running, start_sim, until

PROFILE_NAMES = list(PROFILES)
PORTS = {name: f"lte-{i}" for i, name in enumerate(PROFILE_NAMES, start=1)}
READY_WAIT = 30.0  # the slowest family (busy SIM, radio off) is up in a few seconds
Check = Callable[["CompatFarm", str], Awaitable[None]]


@dataclass
class CompatFarm:
    nc: Client
    sim: Simulator
    tap: EventTap
    ready: dict[str, str | None] = field(default_factory=dict)  # port -> why it is not
    _rounds: dict[str, dict[str, BaseException | None]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def state(self, port: str) -> contracts.PortState | None:
        states = [e.state for e in self.tap.ports if e.port == port]
        return states[-1] if states else None

    async def outcome(self, name: str, check: Check, profile: str) -> None:
        """Run `check` on every port once (the first item asks), then re-raise `profile`'s."""
        async with self._lock:
            if name not in self._rounds:
                self._rounds[name] = await self._round(check)
        failure = self._rounds[name][PORTS[profile]]
        if failure is not None:
            raise failure

    async def _round(self, check: Check) -> dict[str, BaseException | None]:
        async def one(port: str) -> BaseException | None:
            not_ready = self.ready.get(port)
            if not_ready is not None:
                return AssertionError(f"{port} never became ready: {not_ready}")
            try:
                await check(self, port)
            except (AssertionError, TimeoutError, OSError, ValueError) as exc:
                return exc
            return None

        ports = list(PORTS.values())
        results = await asyncio.gather(*(one(port) for port in ports))
        return dict(zip(ports, results, strict=True))


@contextlib.asynccontextmanager
async def compat_farm(nats: NatsConfig) -> AsyncIterator[CompatFarm]:
    nc = (await fresh_bus(nats)).nc
    sim = await start_sim(
        ports=len(PORTS),
        profiles={port: name for name, port in PORTS.items()},
        ussd_delay=0.05,
        reset_time=0.2,
    )
    tap = EventTap()
    await tap.start(nc)
    config = agent_config(nats, "compat", sim.devices, command_timeout=2.0, send_timeout=10.0)
    farm = CompatFarm(nc=nc, sim=sim, tap=tap)
    try:
        async with agent_running(config):
            await _wait_ready(farm)
            yield farm
    finally:
        await sim.stop()
        await nc.close()


async def _wait_ready(farm: CompatFarm) -> None:
    """Give every port its chance to come up; note why the ones that did not are down."""

    def been_ready() -> set[str]:
        return {e.port for e in farm.tap.ports if e.state.status is contracts.PortStatus.READY}

    with contextlib.suppress(AssertionError):
        await until(lambda: set(PORTS.values()) <= been_ready(), "every port ready", READY_WAIT)
    up = been_ready()
    for port in PORTS.values():
        if port not in up:
            state = farm.state(port)
            farm.ready[port] = (state.last_error if state else None) or "no port state"


async def ussd(farm: CompatFarm, port: str, code: str, timeout: float) -> contracts.ControlReply:  # noqa: ASYNC109
    reply = await farm.nc.request(
        subjects.ussd(port),
        contracts.encode(contracts.UssdRequest(code=code, timeout=timeout)),
        timeout=timeout + 10,
    )
    return contracts.decode(reply.data, contracts.ControlReply)
