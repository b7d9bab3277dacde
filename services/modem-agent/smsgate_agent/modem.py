"""One modem's life: open, initialise, identify, send, receive, report, stay healthy.

`Modem.run()` owns the port. It opens it, brings the modem into PDU mode with message
indications on, then keeps it healthy: registration and signal are polled, storage is
swept for messages whose URC was lost, and a modem that stops answering goes down the
recovery ladder (AT retries, ESC/Ctrl-Z, reopen, reset command, then down with back-off).
A modem that disappears (USB unplug, TCP reset) is reopened when it comes back.

An inbound SMS is deleted from the modem only after `on_inbound` returned, which the agent
does once the SMS is durable on the bus; a crash in between gives a duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Literal

from smsgate.backoff import Backoff
from smsgate.cancelling import cancel_and_wait
from smsgate.config import AgentPort

from smsgate_agent.at_channel import AtClosed, AtTimeout
from smsgate_agent.at_parser import Urc
from smsgate_agent.inbox import DIRECT_URCS, STORED_URCS, InboundHandler, Inbox, ReportHandler
from smsgate_agent.link import ModemInfo, ModemLink, ModemStatus, ModemTimings, StateHandler
from smsgate_agent.replies import dbm_from_csq
from smsgate_agent.sending import PartHook, Sender, SendOutcome
from smsgate_agent.startup import ModemSetup, Opener, Startup
from smsgate_agent.transport import Transport, open_transport
from smsgate_agent.ussd import Ussd

log = logging.getLogger("smsgate.modem")

Problem = Literal["lost", "unresponsive", "reinit", "crashed"]


class Modem:
    """One modem on one port, from power-on to unplug and back.

    The parts: `ModemLink` (channel, commands, state), `Startup` (bring-up, polls, the
    recovery ladder), `Inbox` (received messages and reports), `Sender`, `Ussd`.
    """

    def __init__(
        self,
        port: AgentPort,
        *,
        command_timeout: float = 10.0,
        send_timeout: float = 60.0,
        on_inbound: InboundHandler,
        on_report: ReportHandler,
        on_state: StateHandler,
        timings: ModemTimings | None = None,
        opener: Opener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.port = port
        self.name = port.name
        self.timings = timings or ModemTimings()
        self._rng = rng or random.Random()
        self.link = ModemLink(
            self.name, timings=self.timings, command_timeout=command_timeout, on_state=on_state
        )
        setup = ModemSetup()
        self.inbox = Inbox(self.link, setup, on_inbound=on_inbound, on_report=on_report)
        self.startup = Startup(
            self.link,
            port,
            setup,
            opener=opener or open_device,
            on_urc=self._on_urc,
            on_initialised=self.inbox.sweep,  # messages that came while we were away
        )
        self.sender = Sender(self.link, port, setup, send_timeout=send_timeout, rng=self._rng)
        self._ussd = Ussd(self.link)
        self._reinit = asyncio.Event()  # the modem rebooted on its own (RDY)
        self._poll_now = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def info(self) -> ModemInfo:
        return self.link.info

    @property
    def ready(self) -> bool:
        """Up, and not known to be off the network: it can take a send now."""
        return self.link.ready

    async def send(
        self,
        to: str,
        text: str,
        *,
        status_report: bool,
        on_part: PartHook | None = None,
    ) -> SendOutcome:
        """Send one message (see `Sender.send`)."""
        return await self.sender.send(to, text, status_report=status_report, on_part=on_part)

    async def ussd(self, code: str, timeout: float) -> str:  # noqa: ASYNC109 - the caller's deadline
        """Ask the network a USSD code (`*100#`) and return its answer."""
        return await self._ussd.ask(code, timeout)

    # --- life -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open, initialise and keep the modem healthy until cancelled or closed."""
        self._run_task = asyncio.current_task()
        t = self.timings
        startup = self.startup
        attempts = 0
        backoff = Backoff.between(t.down_delay)
        up = False
        try:
            while not self._closed:
                if not up:
                    up = await startup.bring_up(
                        reset=attempts > 0 and attempts % t.reset_every == 0
                    )
                    if not up:
                        attempts += 1
                        await backoff.sleep(scale=0.75 + self._rng.random() / 2)
                        continue
                    attempts = 0
                    backoff.reset()
                problem = await self._serve()
                if not self._closed:  # whatever the problem, the modem is brought back
                    self.link.restarts += 1
                if problem == "unresponsive":
                    up = await startup.recover()
                    if not up:
                        attempts += 1  # the ladder ended with a reset: back off, then retry
                        await asyncio.sleep(backoff.upcoming)
                    continue
                up = False
                if problem == "lost":
                    self.link.down("port lost")
                    await startup.drop_channel()  # reopened at once: a TCP reset is often brief
                elif problem == "crashed":
                    await asyncio.sleep(t.down_delay[0])  # a bug must not spin the loop
                # "reinit": the modem restarted on its own; initialise it again.
        finally:
            await startup.drop_channel()
            if self.link.info.status is not ModemStatus.DOWN:
                self.link.update(status=ModemStatus.DOWN, last_error="closed")

    async def close(self) -> None:
        """Stop `run()` and release the port."""
        self._closed = True
        task = self._run_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await cancel_and_wait(task)
        await self.startup.drop_channel()

    async def _serve(self) -> Problem:
        """Poll, sweep and handle URCs until the modem goes quiet or the port goes away."""
        channel = self.link.channel
        assert channel is not None
        self.link.trouble.clear()
        self._reinit.clear()
        tasks = [
            asyncio.create_task(self.inbox.run(), name=f"{self.name}-urc"),
            asyncio.create_task(self._poller(), name=f"{self.name}-poll"),
            asyncio.create_task(self._sweeper(), name=f"{self.name}-sweep"),
        ]
        watch: dict[asyncio.Task[object], Problem] = {
            asyncio.create_task(channel.wait_closed()): "lost",
            asyncio.create_task(self.link.trouble.wait()): "unresponsive",
            asyncio.create_task(self._reinit.wait()): "reinit",
        }
        try:
            done, _ = await asyncio.wait([*tasks, *watch], return_when=asyncio.FIRST_COMPLETED)
            if channel.closed:
                return "lost"
            for task, problem in watch.items():
                if task in done:
                    return problem
            for task in tasks:
                if task in done and not task.cancelled() and task.exception() is not None:
                    log.error(
                        "%s: %s failed", self.name, task.get_name(), exc_info=task.exception()
                    )
                    return "crashed"
            return "unresponsive"  # a task stopped because a command timed out
        finally:
            await cancel_and_wait(*tasks, *watch)

    async def _poller(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timings.poll_interval):
                    await self._poll_now.wait()
                # A registration URC asks for an early poll, but a chatty modem must not
                # turn its URCs into a stream of queries.
                await asyncio.sleep(self.timings.urc_poll_gap)
            self._poll_now.clear()
            try:
                await self.startup.poll()
            except AtTimeout:
                return  # link.at flagged trouble; the ladder takes over
            except AtClosed:
                return

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.timings.sweep_interval)
            self.inbox.sweep()

    # --- unsolicited ----------------------------------------------------------------------

    def _on_urc(self, urc: Urc) -> None:
        """Called by the channel's reader for every URC; never blocks."""
        name = urc.name
        if name in STORED_URCS or name in DIRECT_URCS:
            self.inbox.notice(urc)
        elif name == "+CUSD":
            self._ussd.answer(urc)
        elif name in ("+CREG", "+CEREG", "+CGREG"):
            self._poll_now.set()  # trust our own query, not a URC that may be stale
        elif name == "^RSSI":
            value = urc.args.strip()
            if value.isdigit():
                self.link.update(signal=dbm_from_csq(int(value)))
        elif name == "RDY":
            log.warning("%s: modem restarted on its own", self.name)
            self._reinit.set()
        else:
            log.debug("%s: URC %s", self.name, urc.line)


async def open_device(device: str, baudrate: int) -> Transport:
    """Open a serial device, pty or `socket://` URL: the default opener."""
    return await open_transport(device, baudrate=baudrate)
