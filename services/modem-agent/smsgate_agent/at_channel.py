"""The async AT channel: one command at a time over a transport, URCs to a handler.

`AtChannel` runs the pure `AtParser` (smsgate_agent.at_parser) over a `Transport`, with
the timeouts, the `>` prompt of AT+CMGS, resynchronisation after a lost command and the
errors a caller tells apart (no prompt: nothing sent; timeout after the PDU: unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from smsgate_agent.at_parser import (
    CTRL_Z,
    ESC,
    AtParser,
    Event,
    Final,
    PendingCommand,
    Prompt,
    Reply,
    Settled,
    Stray,
    Urc,
)
from smsgate_agent.transport import Transport, TransportError

log = logging.getLogger("smsgate_agent.at")


class AtError(Exception):
    """A command could not be completed."""


class AtTimeout(AtError):
    """No final result code in time: the modem may be hung."""


class NoPrompt(AtTimeout):
    """`AT+CMGS` got no `>` prompt; the PDU was never written, so nothing was sent."""


class SendTimeout(AtTimeout):
    """No `+CMGS:` after the PDU was written: the part may or may not have gone out."""


class AtClosed(AtError, ConnectionError):
    """The port went away (unplugged, reset, closed)."""


class SendInterrupted(AtClosed):
    """The port went away after the PDU was written: the outcome is unknown."""


class CommandError(AtError):
    """The modem answered a command with an error."""

    def __init__(self, command: str, reply: Reply) -> None:
        super().__init__(f"{command}: {reply.final}")
        self.command = command
        self.reply = reply


UrcHandler = Callable[[Urc], None]


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AtChannel:
    """One command at a time to one modem, with URCs routed to a handler as they arrive."""

    def __init__(
        self,
        transport: Transport,
        *,
        on_urc: UrcHandler,
        name: str = "modem",
        settle_time: float = 0.3,
        quiet_time: float = 0.2,
        escape_wait: float = 1.0,
    ) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._on_urc = on_urc
        self._name = name
        self._parser = AtParser()
        self._lock = asyncio.Lock()
        self._events: deque[Event] = deque()  # replies and prompts for the command in flight
        self._waiter: asyncio.Future[None] | None = None  # a command waiting for an event
        self._settle_time = settle_time  # how long an `OK` may trail a Settled reply
        self._quiet_time = quiet_time  # silence that ends a resync after a lost command
        self._escape_wait = escape_wait  # for an answer to ESC after a missing prompt
        # A freshly opened port may hold bytes from before (a pty keeps them): drain first.
        self._dirty = True
        self._last_rx = time.monotonic()
        self._closed = asyncio.Event()
        self._error: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading from the transport."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name=f"at-{self._name}")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Stop reading and close the transport."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._transport.close()
        self._mark_closed(None)

    def _mark_closed(self, exc: BaseException | None) -> None:
        if not self._closed.is_set():
            self._error = exc
            self._closed.set()
            self._events.append(Stray(""))  # wake a command waiting for events
            self._wake()

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._transport.read()
                self._last_rx = time.monotonic()
                for event in self._parser.feed(data):
                    self._dispatch(event)
        except TransportError as exc:
            log.info("%s: port closed: %s", self._name, exc)
            self._mark_closed(exc)
        except asyncio.CancelledError:
            self._mark_closed(None)
            raise
        except Exception as exc:
            # Whatever broke the reader, a channel nobody reads is a lost port: reopen it.
            log.exception("%s: reader failed", self._name)
            self._mark_closed(exc)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Urc):
            try:
                self._on_urc(event)
            except Exception:
                log.exception("%s: URC handler failed on %r", self._name, event.line)
        elif isinstance(event, Stray):
            if event.line:
                log.debug("%s: stray line %r", self._name, event.line)
        else:
            self._events.append(event)
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _raise_if_closed(self, *, after_pdu: bool = False) -> None:
        if self._closed.is_set():
            kind = SendInterrupted if after_pdu else AtClosed
            raise kind(f"{self._name}: port closed ({self._error or 'closed'})")

    async def _resync(self) -> None:
        # A command we gave up on may still answer; let it finish talking so its late
        # `OK` is not taken as the answer to the next command.
        deadline = time.monotonic() + max(10 * self._quiet_time, 1.0)
        while time.monotonic() < deadline:
            idle = time.monotonic() - self._last_rx
            if idle >= self._quiet_time:
                break
            await asyncio.sleep(self._quiet_time - idle)
        self._dirty = False

    async def _write(
        self, data: bytes, deadline: float | None = None, *, after_pdu: bool = False
    ) -> None:
        """Write `data`; TimeoutError when it is not taken by `deadline` (loop time)."""
        self._raise_if_closed(after_pdu=after_pdu)
        timeout = None if deadline is None else max(deadline - self._loop.time(), 0.0)
        try:
            await self._transport.write(data, timeout)
        except TransportError as exc:
            self._mark_closed(exc)
            self._raise_if_closed(after_pdu=after_pdu)

    async def _next_event(self, deadline: float, *, after_pdu: bool = False) -> Event:
        """The next reply event; TimeoutError at `deadline` (loop time).

        One future and one timer per wait: cheaper than a queue under `asyncio.timeout`,
        and a command's wait is the hottest path of a busy port.
        """
        self._raise_if_closed(after_pdu=after_pdu)
        if not self._events:
            self._waiter = waiter = self._loop.create_future()
            timer = self._loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if self._waiter is waiter:
                    self._waiter = None
            self._raise_if_closed(after_pdu=after_pdu)
        return self._events.popleft()

    def _begin(self, command: PendingCommand) -> None:
        self._events.clear()
        self._parser.begin(command)

    def _give_up(self) -> None:
        self._parser.abandon()
        self._dirty = True

    async def command(
        self,
        text: str,
        *,
        timeout: float,  # noqa: ASYNC109 - every AT command has its own deadline
        prefixes: frozenset[str] | set[str] | None = None,
        complete_on: str | None = None,
    ) -> Reply:
        """Send one command and wait for its reply. Raises AtTimeout or AtClosed."""
        command = PendingCommand.of(text, prefixes=prefixes, prompt=False, complete_on=complete_on)
        async with self._lock:
            return await self._run(command, timeout)

    async def _run(self, command: PendingCommand, timeout: float) -> Reply:  # noqa: ASYNC109
        self._raise_if_closed()
        if self._dirty:
            await self._resync()
        self._begin(command)
        done = False
        deadline = self._loop.time() + timeout
        try:
            await self._write(command.text.encode() + b"\r", deadline)
            while True:
                event = await self._next_event(deadline)
                if isinstance(event, Final):
                    reply = event.reply
                    break
                if isinstance(event, Settled):
                    reply = await self._settle()
                    break
            done = True
            return reply
        except TimeoutError:
            raise AtTimeout(f"{self._name}: {command.text}: no answer in {timeout:g}s") from None
        finally:
            if not done:
                self._give_up()

    async def _settle(self) -> Reply:
        # Wavecom ends `AT+CPIN?` without OK; others send it. Wait briefly so a trailing
        # OK is not mistaken for the answer to the next command.
        deadline = self._loop.time() + self._settle_time
        while self._loop.time() < deadline:
            try:
                event = await self._next_event(deadline)
            except TimeoutError:
                break
            if isinstance(event, Final):
                return event.reply
        return self._parser.settle()

    async def send_pdu(
        self,
        length: int,
        pdu: str,
        *,
        prompt_timeout: float,
        timeout: float,  # noqa: ASYNC109 - +CMGS may take minutes; the caller says how long
        gate: Awaitable[object] | None = None,
        command: str | None = None,
    ) -> Reply:
        """`AT+CMGS=<length>`, the PDU and Ctrl-Z; the reply holds `+CMGS: <mr>`.

        `command` replaces `AT+CMGS=<length>` (text mode: `AT+CMGS="<da>"`, the text as `pdu`).

        `gate` is awaited at the prompt, before the PDU is written; if it fails, the
        prompt is cancelled with ESC and its exception propagates (nothing was sent).
        Raises NoPrompt (nothing was sent), SendTimeout or SendInterrupted (outcome unknown),
        AtClosed (the port was gone before the PDU was written).
        """
        pending = PendingCommand.of(command or f"AT+CMGS={length}", prompt=True)
        async with self._lock:
            self._raise_if_closed()
            if self._dirty:
                await self._resync()
            self._begin(pending)
            done = False
            try:
                deadline = self._loop.time() + prompt_timeout
                try:
                    await self._write(pending.text.encode() + b"\r", deadline)
                    while True:
                        event = await self._next_event(deadline)
                        if isinstance(event, Final) and event.reply.ok:
                            # AT+CMGS gets a prompt or an error, never a bare OK: this one
                            # answered something earlier (an ESC's OK that came late).
                            raise TimeoutError
                        if isinstance(event, Final):
                            done = True
                            return event.reply  # refused before the prompt
                        if isinstance(event, Prompt):
                            break
                except TimeoutError:
                    await self._escape()
                    done = True
                    raise NoPrompt(f"{self._name}: no prompt for {pending.text}") from None
                if gate is not None:
                    try:
                        await gate
                    except BaseException:
                        await self._escape()
                        done = True
                        raise
                deadline = self._loop.time() + timeout
                try:
                    await self._write(pdu.encode() + CTRL_Z, deadline, after_pdu=True)
                    while True:
                        event = await self._next_event(deadline, after_pdu=True)
                        if isinstance(event, Final):
                            done = True
                            return event.reply
                except TimeoutError:
                    raise SendTimeout(
                        f"{self._name}: no +CMGS within {timeout:g}s after the PDU"
                    ) from None
            finally:
                if not done:
                    self._give_up()

    async def _escape(self) -> None:
        # ESC leaves the prompt state if the modem entered it without telling us; its
        # answer (OK, ERROR or nothing) is drained here so it cannot answer the next command.
        self._parser.abandon()
        with contextlib.suppress(AtClosed):
            await self._write(ESC)
        self._dirty = True
        with contextlib.suppress(TimeoutError, AtClosed):
            async with asyncio.timeout(self._escape_wait):
                await self._resync()

    def resync(self) -> None:
        """Before the next command, wait for the line to go quiet (replies seem out of step)."""
        self._dirty = True

    async def flush(self) -> None:
        """ESC then Ctrl-Z: kick a modem stuck waiting for a PDU back to command mode."""
        async with self._lock:
            self._parser.abandon()
            await self._write(ESC)
            await asyncio.sleep(self._quiet_time)
            await self._write(CTRL_Z)
            self._dirty = True
