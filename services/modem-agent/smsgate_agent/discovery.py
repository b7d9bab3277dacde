"""Bind ports by identity: find the device whose modem has a given IMEI or SIM ICCID.

USB modems come back as other `ttyUSB*` numbers after a reboot or replug. A port
configured with `imei = "…"` or `iccid = "…"` and a device glob is named by what answers,
so two ports never swap names.
"""

from __future__ import annotations

import asyncio
import glob
import logging
from dataclasses import dataclass

import msgspec
from smsgate.config import AgentPort

from smsgate_agent.at_channel import AtChannel, AtError
from smsgate_agent.at_parser import Urc
from smsgate_agent.replies import normalise_iccid
from smsgate_agent.startup import ICCID_COMMANDS
from smsgate_agent.transport import TransportError, open_transport

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


async def resolve(ports: list[AgentPort], taken: set[str]) -> list[AgentPort]:
    """The identity-bound ports with `device` set to where their modem answered.

    Ports whose modem is not found are left out (and logged); `taken` devices are
    never probed (path-bound ports own them).
    """
    wanted = [p for p in ports if bound_by_identity(p)]
    if not wanted:
        return []
    devices = sorted({d for p in wanted for d in candidates(p.device)} - taken)
    identities = await asyncio.gather(*(probe(d, wanted[0].baudrate) for d in devices))
    found: list[AgentPort] = []
    free = dict(zip(devices, identities, strict=True))
    for port in wanted:
        pool = [d for d in candidates(port.device) if d in free]
        device = next((d for d in pool if (i := free[d]) is not None and matches(port, i)), None)
        if device is None:
            log.error(
                "port %s: no modem with %s among %s",
                port.name,
                f"imei {port.imei}" if port.imei else f"iccid {port.iccid}",
                port.device,
            )
            continue
        del free[device]
        log.info("port %s is %s (matched by identity)", port.name, device)
        found.append(msgspec.structs.replace(port, device=device))
    return found
