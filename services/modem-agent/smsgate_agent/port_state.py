"""A port's state on the bus: the `sms_ports` entry, and the port events its changes make.

A state is written when it changes, not every heartbeat: the agent's lease, renewed every
beat, keeps an unchanged state standing for every reader (smsgate.port_liveness). Busy
and ready alternate with every message: that is not an event, and the agent's state loop
writes it to the KV soon after (at most every STATE_FLUSH seconds), not twice per
message. Every other change of status, and a SIM changed in the port, is an event. What
else changes (counters, signal, the queue) is written at the next heartbeat.

Each write is acknowledged, without the send loop waiting: a write the server did not
take is written again at the next beat, so the bucket never keeps a stale state while
the agent's lease says it is current. A slow refresh (`REFRESH_BEATS`) rewrites an
unchanged state anyway: it bounds how long an entry lost or deleted behind the agent's
back (a bucket made anew, a key deleted by hand) stays missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

import msgspec
from smsgate import contracts
from smsgate.contracts import PortState, PortStatus

from smsgate_agent.publisher import Publisher

log = logging.getLogger("smsgate.agent")

ROUTINE = {PortStatus.BUSY, PortStatus.READY}
REFRESH_BEATS = 60  # heartbeats between rewrites of an unchanged state (5 min by default)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_encode = msgspec.json.Encoder().encode


def content(state: PortState) -> bytes:
    """What a state says, apart from when it was written: equal content, no write."""
    return _encode(msgspec.structs.replace(state, updated=_EPOCH))


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
        self._written: bytes | None = None  # the content last written, None: write again
        self._writes = 0  # writes sent, so that only the last one's failure counts

    async def publish(self, *, force: bool = False) -> None:
        """Write the state if its status or SIM changed (or `force`); busy/ready flips only
        mark it dirty."""
        change = state_change(self._last_status, self._last_imsi, self._status(), self._imsi())
        if change is Quiet.ROUTINE:
            self.dirty = True
            change = None
        if change is None and not force:
            return
        await self._write(self._snapshot(), change)

    async def beat(self, *, refresh: bool = False) -> None:
        """The heartbeat's look at the port: write its state if anything in it changed
        since the last write the server took (or `refresh`)."""
        state = self._snapshot()
        if refresh or self._written != content(state):
            change = state_change(self._last_status, self._last_imsi, state.status, state.imsi)
            await self._write(state, None if change is Quiet.ROUTINE else change)

    def forget(self) -> None:
        """Write the state again at the next beat: the server may have lost what it had."""
        self._written = None

    async def flush(self) -> None:
        """Write a busy/ready flip that is still so (a port busy again is not rewritten)."""
        self.dirty = False
        if self._status() != self._last_status:
            await self.publish(force=True)

    async def _write(self, state: PortState, change: str | None) -> None:
        self._last_status, self._last_imsi = state.status, state.imsi or self._last_imsi
        self.dirty = False
        self._written = content(state)
        self._writes += 1
        try:
            ack = await self.publisher.port_state(state)
            if ack is not None:
                ack.add_done_callback(functools.partial(self._acked, self._writes))
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
            self._written = None
            log.warning("%s: port state not published: %s", self.name, exc)

    def _acked(self, write: int, ack: asyncio.Future[Any]) -> None:
        failed = ack.cancelled() or ack.exception() is not None
        if failed and write == self._writes:
            self._written = None  # the last write is not in the bucket: again next beat
