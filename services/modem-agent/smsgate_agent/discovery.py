"""Bind ports by identity: find the device whose modem has a given IMEI or SIM ICCID.

USB modems come back as other `ttyUSB*` numbers after a reboot, a replug or a USB
re-enumeration while the agent runs. A port configured with `imei = "…"` or `iccid = "…"`
and a device glob is named by what answers, so two ports never swap names: every time such
a port (re)opens, `IdentityOpener` looks for its modem among the devices no other port of
this agent holds, the one it had first.
"""

from __future__ import annotations

import asyncio
import glob
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from smsgate.config import AgentPort

from smsgate_agent.at_channel import AtChannel, AtError
from smsgate_agent.at_parser import Urc
from smsgate_agent.replies import normalise_iccid
from smsgate_agent.startup import ICCID_COMMANDS, describe
from smsgate_agent.transport import Transport, TransportError, open_transport

log = logging.getLogger("smsgate.agent")

PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Identity:
    imei: str | None
    iccid: str | None


def bound_by_identity(port: AgentPort) -> bool:
    return port.imei is not None or port.iccid is not None


def candidates(pattern: str) -> list[str]:
    """Devices a glob names (a URL or plain path names itself)."""
    if "://" in pattern or not glob.has_magic(pattern):
        return [pattern]
    return sorted(glob.glob(pattern))


def _ignore(urc: Urc) -> None:
    pass


async def probe(device: str, baudrate: int) -> Identity | None:
    """Ask the modem on `device` for its IMEI and its SIM's ICCID; None if nothing answers."""
    try:
        transport = await open_transport(device, baudrate=baudrate, timeout=PROBE_TIMEOUT)
    except (TransportError, OSError) as exc:
        log.debug("probe %s: %s", device, exc)
        return None
    channel = AtChannel(transport, on_urc=_ignore, name=f"probe {device}")
    channel.start()
    try:
        await channel.command("ATE0", timeout=PROBE_TIMEOUT)
        reply = await channel.command("AT+CGSN", timeout=PROBE_TIMEOUT)
        imei = next((t for t in reply.texts if t.isdigit() and 14 <= len(t) <= 17), None)
        iccid = None
        for command in ICCID_COMMANDS:
            reply = await channel.command(command, timeout=PROBE_TIMEOUT)
            if reply.ok:
                iccid = next(
                    (i for i in (normalise_iccid(ln.args) for ln in reply.lines) if i), None
                )
            if iccid:
                break
        return Identity(imei=imei, iccid=iccid)
    except AtError as exc:
        log.debug("probe %s: %s", device, exc)
        return None
    finally:
        await channel.close()


def matches(port: AgentPort, identity: Identity) -> bool:
    if port.imei is not None and port.imei != identity.imei:
        return False
    return port.iccid is None or port.iccid == identity.iccid


class DeviceClaims:
    """Which device each port of this agent holds, so a search never opens another's."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}  # port name -> device
        self.searching = asyncio.Lock()  # one search at a time: probes must not overlap

    def device_of(self, port: str) -> str | None:
        return self._held.get(port)

    def hold(self, port: str, device: str) -> None:
        self._held[port] = device

    def release(self, port: str) -> None:
        self._held.pop(port, None)

    def taken(self, port: str) -> set[str]:
        """Devices held by the other ports."""
        return {device for name, device in self._held.items() if name != port}


Open = Callable[[str, int], Awaitable[Transport]]


class IdentityOpener:
    """Opens an identity-bound port: wherever its modem answers now, among free devices."""

    def __init__(self, port: AgentPort, claims: DeviceClaims, *, open_device: Open) -> None:
        self.port = port
        self.claims = claims
        self._open = open_device

    async def __call__(self, pattern: str, baudrate: int) -> Transport:
        async with self.claims.searching:
            device = await self._find(pattern, baudrate)
            if device is None:
                self.claims.release(self.port.name)
                raise TransportError(f"no modem with {describe(self.port)} among {pattern}")
            if device != self.claims.device_of(self.port.name):
                log.info("port %s is %s (matched by identity)", self.port.name, device)
            self.claims.hold(self.port.name, device)
        return await self._open(device, baudrate)

    async def _find(self, pattern: str, baudrate: int) -> str | None:
        taken = self.claims.taken(self.port.name)
        last = self.claims.device_of(self.port.name)
        pool = [d for d in candidates(pattern) if d not in taken]
        # The device it had is asked first: after a hiccup the modem is usually still there.
        ordered = sorted(pool, key=lambda d: d != last)
        identities = await asyncio.gather(*(probe(d, baudrate) for d in ordered))
        for device, identity in zip(ordered, identities, strict=True):
            if identity is not None and matches(self.port, identity):
                return device
        return None
