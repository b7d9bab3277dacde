"""The AT command channel: a pure response parser, and one command at a time over a transport.

`AtParser` takes bytes and gives events: the reply to the command in flight (`Final`), the
`>` prompt of `AT+CMGS` (`Prompt`), unsolicited result codes (`Urc`) and lines nobody was
waiting for (`Stray`). It never does I/O and never looks at a clock, so every modem quirk
is a byte-string test. `AtChannel` runs it over a `Transport` with timeouts.

Telling a URC from a reply is the hard part. A `+XXX:` line belongs to the command in
flight only if that command expects the prefix (`AT+CSQ` expects `+CSQ`); anything else
with a prefix is unsolicited, even between `>` and `+CMGS:`. The registration family is
ambiguous by prefix alone (`+CREG: 1,1` answers `AT+CREG?`, `+CREG: 1` is a URC), so it
is decided by the shape of its fields as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final as _Const

from smsgate_agent.cms import cme_code, cms_code
from smsgate_agent.transport import Transport, TransportError

log = logging.getLogger(__name__)

CTRL_Z = b"\x1a"
ESC = b"\x1b"

# A line longer than this with no terminator is junk; drop it rather than grow forever.
MAX_LINE: _Const = 8192

# URCs whose next line is a PDU (PDU mode), and replies that interleave header and PDU lines.
PDU_URCS = frozenset({"+CMT", "+CDS", "+CBM"})
PDU_REPLIES = frozenset({"+CMGR", "+CMGL"})
# Replies that carry registration state; their unsolicited twins differ only in shape.
REGISTRATION = frozenset({"+CREG", "+CGREG", "+CEREG", "+C5GREG"})
# Bare words that modems send on their own (boot, calls, SIM ready).
BARE_URCS = frozenset(
    {
        "RING",
        "RDY",
        "SMS READY",
        "CALL READY",
        "PB DONE",
        "NO CARRIER",
        "NORMAL POWER DOWN",
        "POWERED DOWN",
        "UNDER-VOLTAGE POWER DOWN",
        "UNDER-VOLTAGE WARNNING",
        "OVER-VOLTAGE POWER DOWN",
        "^STIN",
    }
)
_PREFIX = re.compile(r"^([+^$%#*][A-Za-z0-9_]+)")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_CMD_PREFIX = re.compile(r"(?:^AT|;)\s*([+^$%#][A-Za-z0-9_]+)", re.IGNORECASE)
_PROMPTED = re.compile(r"^AT\+CMG[SW]=", re.IGNORECASE)


class Status(StrEnum):
    """How a command ended."""

    OK = "OK"
    ERROR = "ERROR"
    CMS_ERROR = "+CMS ERROR"
    CME_ERROR = "+CME ERROR"
    NO_CARRIER = "NO CARRIER"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    NO_DIALTONE = "NO DIALTONE"
    NOT_SUPPORTED = "COMMAND NOT SUPPORT"  # Huawei's word for ERROR


@dataclass(frozen=True, slots=True)
class Line:
    """One information line of a reply, with the PDU line that followed it, if any."""

    text: str
    pdu: str | None = None

    @property
    def prefix(self) -> str:
        match = _PREFIX.match(self.text)
        return match.group(1).upper() if match else ""

    @property
    def args(self) -> str:
        """What follows `+XXX:`; the whole text for a line without a prefix."""
        head, sep, rest = self.text.partition(":")
        return rest.strip() if sep and _PREFIX.match(head) else self.text


@dataclass(frozen=True, slots=True)
class Reply:
    """A completed command: its information lines and how it ended."""

    status: Status
    lines: tuple[Line, ...] = ()
    code: int | None = None  # CMS/CME error number, when it had one
    final: str = "OK"  # the final line as the modem wrote it

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def first(self, prefix: str) -> str | None:
        """The arguments of the first line with `prefix` (e.g. `+CSQ`), or None."""
        for line in self.lines:
            if line.prefix == prefix.upper():
                return line.args
        return None

    def with_prefix(self, prefix: str) -> list[Line]:
        return [line for line in self.lines if line.prefix == prefix.upper()]

    @property
    def texts(self) -> list[str]:
        """The information lines without a prefix (e.g. the digits of `AT+CIMI`)."""
        return [line.text for line in self.lines if not line.prefix]


@dataclass(frozen=True, slots=True)
class PendingCommand:
    """What the parser needs to know about the command in flight."""

    text: str  # as written, without CR; recognises the echo
    prefixes: frozenset[str] = frozenset()  # information prefixes this command answers with
    prompt: bool = False  # AT+CMGS / AT+CMGW: a `>` prompt comes first
    complete_on: str | None = None  # a prefix that ends the reply without OK (Wavecom +CPIN)

    @classmethod
    def of(
        cls,
        text: str,
        *,
        prefixes: frozenset[str] | set[str] | None = None,
        prompt: bool | None = None,
        complete_on: str | None = None,
    ) -> PendingCommand:
        """A command whose expected prefixes are read from its text (`AT+CSQ` -> `+CSQ`)."""
        expected = _prefixes_of(text) if prefixes is None else frozenset(map(str.upper, prefixes))
        if prompt is None:
            prompt = _PROMPTED.match(text) is not None
        return cls(text, expected, prompt, complete_on)


@functools.lru_cache(maxsize=1024)
def _prefixes_of(text: str) -> frozenset[str]:
    # A farm sends the same few commands all day (AT+CMGR=<i>, AT+CMGS=<n>): parse once.
    return frozenset(m.group(1).upper() for m in _CMD_PREFIX.finditer(text))


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code; `pdu` holds the second line of `+CMT`/`+CDS`."""

    name: str  # `+CMTI`, `^RSSI`, `RING`; upper case
    line: str
    pdu: str | None = None

    @property
    def args(self) -> str:
        head, sep, rest = self.line.partition(":")
        return rest.strip() if sep and _PREFIX.match(head) else ""


@dataclass(frozen=True, slots=True)
class Prompt:
    """The `>` prompt: the modem waits for the PDU and Ctrl-Z."""


@dataclass(frozen=True, slots=True)
class Final:
    """The command in flight has ended."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Settled:
    """The reply is complete without a final result code; an `OK` may still follow."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Stray:
    """A line that answers nothing in flight: a late `OK`, an echo, junk."""

    line: str


Event = Final | Prompt | Urc | Settled | Stray


_FINAL_WORDS = {
    **{
        status.value: status
        for status in (
            Status.OK,
            Status.ERROR,
            Status.NO_CARRIER,
            Status.BUSY,
            Status.NO_ANSWER,
            Status.NO_DIALTONE,
        )
    },
    "TOO MANY PARAMETERS": Status.NOT_SUPPORTED,
}


def parse_final(text: str) -> Reply | None:
    """The reply status if `text` is a final result code, else None."""
    upper = text.upper()
    status = _FINAL_WORDS.get(upper)
    if status is not None:
        return Reply(status, final=text)
    if upper.startswith("+CMS ERROR"):
        arg = text.partition(":")[2]
        return Reply(Status.CMS_ERROR, code=cms_code(arg), final=text)
    if upper.startswith("+CME ERROR"):
        arg = text.partition(":")[2]
        return Reply(Status.CME_ERROR, code=cme_code(arg), final=text)
    if upper.startswith("COMMAND NOT SUPPORT"):
        return Reply(Status.NOT_SUPPORTED, final=text)
    return None


def split_fields(args: str) -> list[str]:
    """Split `1,"a,b",,3` into fields, keeping quotes, so commas inside quotes survive."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in args:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return fields


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _is_registration_reply(args: str) -> bool:
    # `<n>,<stat>[,...]` answers a query; a URC is `<stat>[,"lac",...]` with a quoted 2nd field.
    fields = split_fields(args)
    return len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit()


_CONTROL = bytes(range(0x20)) + b"\x7f"


def _clean(raw: bytes) -> str:
    # Junk before a line (a glitch, a modem waking up) must not hide the `OK` behind it,
    # so leading bytes outside printable ASCII go; control bytes (Ctrl-Z of an echoed
    # PDU) go everywhere. They never occur inside a UTF-8 sequence, so they can go
    # before decoding.
    start = 0
    while start < len(raw) and not 0x20 <= raw[start] < 0x7F:
        start += 1
    return raw[start:].translate(None, _CONTROL).decode("utf-8", errors="replace").strip()


@dataclass(slots=True)
class _Pending:
    """The command in flight and what has been said for it so far."""

    command: PendingCommand
    lines: list[Line] = field(default_factory=list)
    prompted: bool = False
    settled: bool = False


class AtParser:
    """Bytes from the modem in, events out. Pure: no I/O, no clock."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: _Pending | None = None
        # A `+CMT:`/`+CDS:` header or a `+CMGR:`/`+CMGL:` reply line waiting for its PDU.
        self._pdu_urc: Urc | None = None
        self._pdu_reply: int | None = None  # index into the pending reply's lines

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def begin(self, command: PendingCommand) -> None:
        """A command is about to be written; replies now belong to it."""
        self._pending = _Pending(command)
        self._pdu_reply = None

    def abandon(self) -> None:
        """Forget the command in flight (timed out or cancelled); late replies become strays."""
        self._pending = None
        self._pdu_reply = None

    def settle(self) -> Reply:
        """End a command that `Settled` (no `OK` came): its reply as it stands."""
        lines = tuple(self._pending.lines) if self._pending else ()
        self.abandon()
        return Reply(Status.OK, lines, final="")

    def feed(self, data: bytes) -> list[Event]:
        """Take bytes as they came from the modem; return the events they complete."""
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos, size = 0, len(buf)
        while pos < size:
            byte = buf[pos]
            if byte == 0x0D or byte == 0x0A:  # line ends: skipped as empty lines
                pos += 1
                continue
            pending = self._pending
            if (
                byte == 0x3E  # ">"
                and pending is not None
                and pending.command.prompt
                and not pending.prompted
                and (pos + 1 == size or buf[pos + 1] in b" \r\n")
            ):
                # `> `, `>` or `>\r\n`: the space or line end that may follow is skipped
                # as an empty line, whenever it arrives.
                pos += 1
                pending.prompted = True
                events.append(Prompt())
                continue
            end = buf.find(b"\r", pos)
            newline = buf.find(b"\n", pos, end if end >= 0 else size)
            if newline >= 0:
                end = newline
            if end < 0:
                if size - pos > MAX_LINE:
                    events.append(Stray(_clean(bytes(buf[pos : pos + 80]))))
                    pos = size
                break
            text = _clean(bytes(buf[pos:end]))
            pos = end + 1
            if text:
                self._line(text, events)
        del buf[:pos]
        return events

    def _line(self, text: str, events: list[Event]) -> None:
        if (self._pdu_urc is not None or self._pdu_reply is not None) and _HEX.match(text):
            self._attach_pdu(text, events)
            return
        pending = self._pending
        final = parse_final(text)
        if final is not None and not (pending is None and final.status is Status.NO_CARRIER):
            self._flush_pdu_urc(events)
            self._pdu_reply = None
            if pending is None:
                events.append(Stray(text))
                return
            self._pending = None
            reply = Reply(final.status, tuple(pending.lines), final.code, final.final)
            events.append(Final(reply))
            return
        match = _PREFIX.match(text)
        prefix = match.group(1).upper() if match else ""
        if (
            pending is not None
            and prefix
            and prefix in pending.command.prefixes
            and (prefix not in REGISTRATION or _is_registration_reply(Line(text).args))
        ):
            self._flush_pdu_urc(events)
            self._reply_line(pending, Line(text), prefix, events)
            return
        if prefix or text.upper() in BARE_URCS:
            self._urc(Urc(prefix or text.upper(), text), events)
            return
        self._flush_pdu_urc(events)
        self._pdu_reply = None
        if pending is None:
            events.append(Stray(text))
        elif text.upper() == pending.command.text.upper():
            return  # the echo (ATE1)
        elif pending.prompted and _HEX.match(text):
            return  # the echoed PDU
        else:
            pending.lines.append(Line(text))

    def _reply_line(self, pending: _Pending, line: Line, prefix: str, events: list[Event]) -> None:
        pending.lines.append(line)
        self._pdu_reply = len(pending.lines) - 1 if prefix in PDU_REPLIES else None
        if pending.command.complete_on == prefix and not pending.settled:
            pending.settled = True
            events.append(Settled(Reply(Status.OK, tuple(pending.lines), final="")))

    def _urc(self, urc: Urc, events: list[Event]) -> None:
        # A URC between a `+CMGR:` header and its PDU does not cut them apart.
        if urc.name in PDU_URCS:
            self._flush_pdu_urc(events)
            self._pdu_urc = urc
        else:
            events.append(urc)

    def _attach_pdu(self, pdu: str, events: list[Event]) -> None:
        if self._pdu_urc is not None:
            urc = self._pdu_urc
            self._pdu_urc = None
            events.append(Urc(urc.name, urc.line, pdu.upper()))
            return
        pending = self._pending
        index = self._pdu_reply
        self._pdu_reply = None
        if pending is not None and index is not None:
            line = pending.lines[index]
            pending.lines[index] = Line(line.text, pdu.upper())

    def _flush_pdu_urc(self, events: list[Event]) -> None:
        # The PDU line never came: hand the header over on its own rather than lose it.
        if self._pdu_urc is not None:
            events.append(self._pdu_urc)
            self._pdu_urc = None


# --- the channel ---------------------------------------------------------------------------


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
    ) -> Reply:
        """`AT+CMGS=<length>`, the PDU and Ctrl-Z; the reply holds `+CMGS: <mr>`.

        `gate` is awaited at the prompt, before the PDU is written; if it fails, the
        prompt is cancelled with ESC and its exception propagates (nothing was sent).
        Raises NoPrompt (nothing was sent), SendTimeout or SendInterrupted (outcome unknown),
        AtClosed (the port was gone before the PDU was written).
        """
        command = PendingCommand.of(f"AT+CMGS={length}", prompt=True)
        async with self._lock:
            self._raise_if_closed()
            if self._dirty:
                await self._resync()
            self._begin(command)
            done = False
            try:
                deadline = self._loop.time() + prompt_timeout
                try:
                    await self._write(command.text.encode() + b"\r", deadline)
                    while True:
                        event = await self._next_event(deadline)
                        if isinstance(event, Final):
                            done = True
                            return event.reply  # refused before the prompt
                        if isinstance(event, Prompt):
                            break
                except TimeoutError:
                    await self._escape()
                    done = True
                    raise NoPrompt(f"{self._name}: no prompt for {command.text}") from None
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
