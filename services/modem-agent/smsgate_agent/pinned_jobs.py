"""Jobs pinned to this agent's ports (`port=` at the API), from its one consumer.

The agent's consumer (consumers.py) delivers the pinned jobs of all its ports in stream
order. Each job goes to its port's queue, where it waits while the port sends the one
before it; the port takes its queue first, before any shared work, in order. A queued
job is kept alive with in-progress acks, so JetStream does not hand it out again.

Flow control: a port queues at most `DEPTH` jobs, and the agent asks for no more jobs
than its ports have room for. A job beyond its port's room goes back (nak) with
a delay that grows while the port stays full, so a port with a long backlog does not
keep the others' jobs behind it, nor churns its own.

A port that cannot send (down, disabled, parked) queues nothing: its jobs are judged as
they come, and its queue each `SWEEP_EVERY`: one older than its `port_wait` fails
(`port unavailable`), any other goes back for `SWEEP_EVERY` and is judged again then.
On stop, the queues go back at once (the port's send loop gives them back).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from smsgate import contracts, subjects

from smsgate_agent.pulls import PullRequests

log = logging.getLogger("smsgate.agent")

DEPTH = 4  # jobs a port queues: one to send next, more to spare a round trip each
EXPIRES = 10.0  # seconds a pull request for pinned jobs waits on the server
MAX_BATCH = 256  # jobs asked for in one request
SWEEP_EVERY = 5.0  # seconds between looks at the queues of ports that cannot send
FULL_DELAY = 1.0  # seconds a job beyond a full queue waits, times how long it stayed full
FULL_DELAY_MAX = 30.0
_PREFIX = subjects.send_port("x")[:-1]  # `sms.send.port.`

SENDING = frozenset({contracts.PortStatus.READY, contracts.PortStatus.BUSY})


class PinnedPort(Protocol):
    """A port that takes pinned jobs (a `PortWorker`)."""

    name: str
    pinned: deque[Msg]  # its queue, taken first by its send loop

    def status(self) -> contracts.PortStatus: ...

    def poke(self) -> None: ...

    async def fail_unavailable(self, msg: Msg, job: contracts.SendJob) -> None: ...

    async def dead_letter(self, msg: Msg, reason: str) -> None: ...


def port_of(subject: str) -> str | None:
    """The port a pinned job's subject names."""
    return subject[len(_PREFIX) :] if subject.startswith(_PREFIX) else None


def overdue(job: contracts.SendJob, now: dt.datetime) -> bool:
    """Whether a pinned job waited for its port longer than its `port_wait`."""
    return now - job.created >= dt.timedelta(seconds=job.port_wait)


def full_delay(times_full: int) -> float:
    """How long a job beyond its port's full queue waits before it comes again."""
    return min(FULL_DELAY * (1 + times_full), FULL_DELAY_MAX)


class PinnedWork:
    """Fills the ports' queues from the agent's consumer, within their room."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        ports: Mapping[str, PinnedPort],
        stopping: asyncio.Event,
        *,
        ack_wait: float,
        hearing: Callable[[], bool] = lambda: True,
        api_prefix: str = "$JS.API",
    ) -> None:
        self.consumer = consumer
        self._ports = ports
        self._stopping = stopping
        self._hearing = hearing
        # The server said the consumer is gone (deleted by hand, its state lost): the
        # agent makes it again and clears this.
        self.lost = False
        self._keep_alive_every = ack_wait / 3
        self.wake = asyncio.Event()  # room was made, or a request is over
        self._full: dict[str, int] = {}  # port -> jobs sent back since its queue was full
        self._pulls = PullRequests(
            nc,
            stream,
            consumer,
            self._on_job,
            expires=EXPIRES,
            wake=self.wake,
            on_status=self._on_status,
            api_prefix=api_prefix,
        )

    def room(self) -> int:
        """Jobs to ask for: what the sending ports can queue now, and as many again for
        each port that cannot send (its jobs are judged as they come, never kept)."""
        room = 0
        for port in self._ports.values():
            room += max(0, DEPTH - len(port.pinned)) if port.status() in SENDING else DEPTH
        return room

    def taken(self, port: PinnedPort) -> None:
        """A port took a job from its queue: there is room again."""
        if not port.pinned:
            self._full.pop(port.name, None)
        self.wake.set()

    async def run(self) -> None:
        """Ask for pinned jobs while the agent runs; ends when `stopping` is set."""
        pulls = self._pulls
        await pulls.start()
        loop = asyncio.get_running_loop()
        next_sweep = next_keep_alive = loop.time()
        try:
            while not self._stopping.is_set():
                self.wake.clear()
                now = loop.time()
                if now >= next_sweep:
                    next_sweep = now + SWEEP_EVERY
                    await self._sweep()
                if now >= next_keep_alive:
                    next_keep_alive = now + self._keep_alive_every
                    await self._keep_alive()
                out = pulls.out
                room = self.room()
                if not out and room and self._hearing():
                    await pulls.ask(min(room, MAX_BATCH))
                    continue
                wait = min(next_sweep, next_keep_alive) - now
                if out:
                    wait = min(wait, pulls.deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.0)):
                        await self.wake.wait()
        finally:
            await pulls.stop()

    def _on_status(self, code: str, description: str) -> None:
        # 503: no one answers for the consumer; 409 "Consumer Deleted".
        if code == "503" or (code == "409" and "deleted" in description.lower()):
            if not self.lost:
                log.warning("consumer %s gone? %s %s", self.consumer, code, description)
            self.lost = True

    async def _on_job(self, msg: Msg) -> None:
        name = port_of(msg.subject)
        port = self._ports.get(name) if name is not None else None
        if port is None or self._stopping.is_set():
            # Not ours (any more): back it goes, for whoever holds that port.
            with contextlib.suppress(Exception):
                await msg.nak(delay=SWEEP_EVERY)
            return
        if port.status() not in SENDING:
            await self._judge(port, msg, contracts.utcnow())
            return
        if len(port.pinned) >= DEPTH:
            times = self._full.get(port.name, 0)
            self._full[port.name] = times + 1
            with contextlib.suppress(Exception):
                await msg.nak(delay=full_delay(times // DEPTH))
            return
        port.pinned.append(msg)
        port.poke()

    async def _judge(self, port: PinnedPort, msg: Msg, now: dt.datetime) -> None:
        """A job for a port that cannot send: failed once overdue, else back for later."""
        try:
            job = contracts.decode(msg.data, contracts.SendJob)
        except msgspec.MsgspecError as exc:
            await port.dead_letter(msg, f"malformed job: {exc}")
            return
        try:
            if overdue(job, now):
                await port.fail_unavailable(msg, job)
            else:
                await msg.nak(delay=SWEEP_EVERY)
        except Exception as exc:  # NATS away: the job comes back after ack_wait
            log.warning("%s: pinned job %s not settled: %s", port.name, job.id, exc)

    async def _sweep(self) -> None:
        """The queues of ports that cannot send (went down, or were disabled or parked
        since their jobs came): each job judged."""
        now = contracts.utcnow()
        for port in self._ports.values():
            if not port.pinned or port.status() in SENDING:
                continue
            waiting, port.pinned = port.pinned, deque()
            self._full.pop(port.name, None)
            for msg in waiting:
                await self._judge(port, msg, now)

    async def _keep_alive(self) -> None:
        """Every queued job: still being worked on (its port is busy)."""
        for port in self._ports.values():
            for msg in list(port.pinned):
                with contextlib.suppress(Exception):
                    await msg.in_progress()
