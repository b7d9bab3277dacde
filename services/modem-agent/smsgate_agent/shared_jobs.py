"""Shared work (`sms.send.any`) pulled for exactly the ports that are idle, as they go idle.

nats-py's `fetch(n)` returns only once the whole batch came (a task per message on the
way): at a thousand ports the ports waited for the fetcher more than for their modems.
Here the agent publishes the JetStream pull request itself and every job goes to an idle
port the moment it arrives. One request is out at a time, for as many jobs as ports were
idle; it ends when they all came, or when the server ends it (a 408 at expiry, a 409
when it cannot keep it, on the request's own reply subject), and the next one asks for
the ports idle then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger("smsgate.agent")

EXPIRES = 2.0  # seconds a pull request waits on the server for jobs
GRACE = 1.0  # seconds past its expiry after which a request is over, said so or not
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


class _PullRequest(msgspec.Struct):
    batch: int
    expires: int  # nanoseconds


_encode = msgspec.json.Encoder().encode


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
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._idle = idle
        self._stopping = stopping
        self._hearing = hearing
        self._inbox = ""
        self._counter = 0
        self._token: str | None = None  # the request out now, if any
        self._remaining = 0  # jobs it may still bring
        self._deadline = 0.0  # monotonic time by which it is over

    async def run(self) -> None:
        """Ask for work while the agent runs; ends when `stopping` is set."""
        self._inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        wake = self._idle.wake
        try:
            while not self._stopping.is_set():
                wake.clear()  # before looking: a port going idle from here on wakes us
                now = time.monotonic()
                if self._token is not None and now >= self._deadline:
                    self._token = None  # its end never came (the connection dropped)
                if self._token is None and self._idle.ports and self._hearing():
                    await self._ask(min(len(self._idle.ports), MAX_BATCH))
                    continue
                wait = self._deadline - now if self._token is not None else 1.0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _ask(self, batch: int) -> None:
        self._counter += 1
        token = str(self._counter)
        self._token, self._remaining = token, batch
        self._deadline = time.monotonic() + EXPIRES + GRACE
        request = _encode(_PullRequest(batch=batch, expires=int(EXPIRES * 1e9)))
        try:
            await self._nc.publish(self._next, request, reply=f"{self._inbox}.{token}")
        except Exception as exc:
            self._token = None
            log.warning("asking for shared work failed: %s", exc)
            await asyncio.sleep(1.0)

    def _over(self) -> None:
        self._token = None
        self._idle.wake.set()  # ports may still be idle: ask again

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None:
            # Only a status ends a request, on its own reply subject; 100 is a heartbeat.
            if status != "100" and msg.subject == f"{self._inbox}.{self._token}":
                self._over()
            return
        if self._token is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self._over()
        taker = None if self._stopping.is_set() else self._idle.take()
        if taker is None:
            # No port can take it any more (one went down, or took pinned work): back it goes.
            with contextlib.suppress(Exception):
                await msg.nak(delay=NAK_DELAY)
            return
        taker.offer(msg, pinned=False)
