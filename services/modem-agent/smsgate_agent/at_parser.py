"""The pure AT response parser: bytes in, events out; no I/O, no clock.

`AtParser` takes bytes and gives events: the reply to the command in flight (`Final`), the
`>` prompt of `AT+CMGS` (`Prompt`), unsolicited result codes (`Urc`) and lines nobody was
waiting for (`Stray`). It never does I/O and never looks at a clock, so every modem quirk
is a byte-string test. `smsgate_agent.at_channel` runs it over a transport with timeouts.

Telling a URC from a reply is the hard part. A `+XXX:` line belongs to the command in
flight only if that command expects the prefix (`AT+CSQ` expects `+CSQ`); anything else
with a prefix is unsolicited, even between `>` and `+CMGS:`. The registration family is
ambiguous by prefix alone (`+CREG: 1,1` answers `AT+CREG?`, `+CREG: 1` is a URC), so it
is decided by the shape of its fields as well.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final as _Const

from smsgate_agent.cms import cme_code, cms_code

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
        "SMS DONE",  # SIMCom SIM7600
        "MODEM:STARTUP",  # Neoway
        "NO CARRIER",
        "NORMAL POWER DOWN",
        "POWERED DOWN",
        "UNDER-VOLTAGE POWER DOWN",
        "UNDER-VOLTAGE WARNNING",
        "OVER-VOLTAGE POWER DOWN",
        "^STIN",
    }
)
# "!" is Sierra's (`!ICCID:`), "_" Option's (`_OSSYSI:`): prefixes like the others.
_PREFIX = re.compile(r"^([+^$%#*!_][A-Za-z0-9_]+)")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_CMD_PREFIX = re.compile(r"(?:^AT|;)\s*([+^$%#!_][A-Za-z0-9_]+)", re.IGNORECASE)
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
        # A URC between a `+CMGR:` header and its PDU does not cut them apart. A text-mode
        # `+CDS: <fo>,<mr>,...` is whole on its line; the PDU form is `+CDS: <length>`.
        if urc.name in PDU_URCS and not (urc.name == "+CDS" and "," in urc.args):
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
