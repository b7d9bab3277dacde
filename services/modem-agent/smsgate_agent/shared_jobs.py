"""Shared work (`sms.send.any`) pulled for exactly the ports that are idle, as they go idle.

Every job goes to an idle port the moment it arrives (pulls.py: nats-py's `fetch(n)`
made ports wait for whole batches). One request is out at a time, for as many jobs as
ports were idle; once it is over, the next one asks for the ports idle then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg

from smsgate_agent.pulls import PullRequests

log = logging.getLogger("smsgate.agent")

EXPIRES = 2.0  # seconds a pull request waits on the server for jobs
MAX_BATCH = 256  # jobs asked for in one request
NAK_DELAY = 0.2  # seconds before a job no port could take is offered again


class IdlePort(Protocol):
    """A port that can wait for shared work (a `PortWorker`)."""

    name: str

    def can_take(self) -> bool: ...

    def offer(self, msg: Msg, *, pinned: bool) -> None: ...


@dataclass
class IdlePorts:
    """The agent's ports that wait for shared work, in the order they became idle."""

    ports: dict[str, IdlePort] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, port: IdlePort) -> None:
        self.ports[port.name] = port
        self.wake.set()

    def discard(self, port: IdlePort) -> None:
        self.ports.pop(port.name, None)

    def take(self) -> IdlePort | None:
        """The port idle longest that can still take a job; ports that cannot are dropped."""
        while self.ports:
            port = self.ports.pop(next(iter(self.ports)))
            if port.can_take():
                return port
        return None


class SharedWork:
    """Keeps jobs asked for while ports are idle, and hands each one to an idle port."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        idle: IdlePorts,
        stopping: asyncio.Event,
        *,
        hearing: Callable[[], bool] = lambda: True,
        api_prefix: str = "$JS.API",
    ) -> None:
        """`hearing`: whether the server answered lately; no work is asked for until then."""
        self._idle = idle
        self._stopping = stopping
        self._hearing = hearing
        self._pulls = PullRequests(
            nc,
            stream,
            consumer,
            self._on_job,
            expires=EXPIRES,
            wake=idle.wake,  # a request over: ports may still be idle, ask again
            api_prefix=api_prefix,
        )

    async def run(self) -> None:
        """Ask for work while the agent runs; ends when `stopping` is set."""
        pulls = self._pulls
        await pulls.start()
        wake = self._idle.wake
        try:
            while not self._stopping.is_set():
                wake.clear()  # before looking: a port going idle from here on wakes us
                out = pulls.out
                if not out and self._idle.ports and self._hearing():
                    await pulls.ask(min(len(self._idle.ports), MAX_BATCH))
                    continue
                wait = pulls.deadline - time.monotonic() if out else 1.0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
        finally:
            await pulls.stop()

    async def _on_job(self, msg: Msg) -> None:
        taker = None if self._stopping.is_set() else self._idle.take()
        if taker is None:
            # No port can take it any more (one went down, or took pinned work): back it goes.
            with contextlib.suppress(Exception):
                await msg.nak(delay=NAK_DELAY)
            return
        taker.offer(msg, pinned=False)
