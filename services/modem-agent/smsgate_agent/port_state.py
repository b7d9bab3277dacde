"""A port's state on the bus: the `sms_ports` entry, and the port events its changes make.

Busy and ready alternate with every message: that is not an event, and the agent's state
loop writes it to the KV soon after (at most every STATE_FLUSH seconds), not twice per
message. Every other change of status, and a SIM changed in the port, is an event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum

from smsgate import contracts
from smsgate.contracts import PortState, PortStatus

from smsgate_agent.publisher import Publisher

log = logging.getLogger("smsgate.agent")

ROUTINE = {PortStatus.BUSY, PortStatus.READY}


class Quiet(Enum):
    """A change that is written, but later and without an event."""

    ROUTINE = "routine"


def state_change(
    last: PortStatus | None,
    last_imsi: str | None,
    status: PortStatus,
    imsi: str | None,
) -> str | Quiet | None:
    """The port event a new status or SIM makes (its `change`), Quiet.ROUTINE for a
    busy/ready flip, or None when nothing changed."""
    if status != last:
        if last in ROUTINE and status in ROUTINE:
            return Quiet.ROUTINE
        return status.value
    if imsi != last_imsi and last_imsi is not None:
        return "sim changed"
    return None


class PortStateWriter:
    """Writes one port's state when it changed; a change worth it becomes a port event."""

    def __init__(
        self,
        name: str,
        publisher: Publisher,
        status: Callable[[], PortStatus],
        imsi: Callable[[], str | None],
        snapshot: Callable[[], PortState],
    ) -> None:
        self.name = name
        self.publisher = publisher
        self._status, self._imsi, self._snapshot = status, imsi, snapshot
        self._last_status: PortStatus | None = None
        self._last_imsi: str | None = None
        self.dirty = False  # a routine change (busy/ready) not yet in the KV

    async def publish(self, *, force: bool = False) -> None:
        """Write the state if it changed (or `force`); busy/ready flips only mark it dirty."""
        change = state_change(self._last_status, self._last_imsi, self._status(), self._imsi())
        if change is Quiet.ROUTINE:
            self.dirty = True
            change = None
        if change is None and not force:
            return
        state = self._snapshot()
        self._last_status, self._last_imsi = state.status, state.imsi or self._last_imsi
        self.dirty = False
        try:
            await self.publisher.port_state(state)
            if change is not None:
                await self.publisher.event_nowait(
                    contracts.PortEvent(
                        event_id=f"{self.name}:{state.updated.isoformat()}:{change}",
                        port=self.name,
                        port_number=state.port_number,
                        imsi=state.imsi,
                        time=state.updated,
                        change=change,
                        state=state,
                    )
                )
        except Exception as exc:
            log.warning("%s: port state not published: %s", self.name, exc)

    async def flush(self) -> None:
        """Write a busy/ready flip that is still so (a port busy again is not rewritten)."""
        self.dirty = False
        if self._status() != self._last_status:
            await self.publish(force=True)
