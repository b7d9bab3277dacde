"""`run_sim(config)`: the simulator as a long-running service, for `smsgate sim`."""

from __future__ import annotations

import asyncio
import logging

from smsgate.config import SimConfig

from .simulator import Simulator

log = logging.getLogger("smsgate.sim")


async def run_sim(config: SimConfig) -> None:
    """Start the simulator, say where its devices are, and run until cancelled."""
    async with Simulator(config) as sim:
        devices = sim.devices
        log.info(
            "%d virtual modems on %s; control interface %s",
            len(devices),
            config.transport,
            sim.control_url or "off",
        )
        for name, device in devices.items():
            log.info("  %s  %s  %s", name, device, sim.modem(name).sim.msisdn)
        if config.map_file:
            log.info("device map written to %s", config.map_file)
        await asyncio.Event().wait()
