"""AT command lines as V.250 frames them: parsing and the replies handlers give back (pure)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .modem import VirtualModem

ErrorKind = Literal["error", "unsupported", "cme", "cms"]


class Op(enum.Enum):
    EXEC = "exec"  # AT+CSQ
    READ = "read"  # AT+CPIN?
    TEST = "test"  # AT+CNMI=?
    SET = "set"  # AT+CMGF=0


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    """One command: its upper-cased name (`+CMGS`, `E`, `&F`), the form and the raw arguments."""

    name: str
    op: Op
    args: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """Information lines and the final result code (None: the firmware sends none)."""

    lines: list[str] = field(default_factory=list)
    final: str | None = "OK"


OK = Answer()


Handler = Callable[["VirtualModem", ParsedCommand], "Answer | None"]


class Commands(dict[str, Handler]):
    """Command name -> handler; `@commands.handles("+CSQ")` registers one."""

    def handles(self, *names: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for name in names:
                self[name] = handler
            return handler

        return register


class ErrorAnswer(Exception):
    """A command fails: plain ERROR, the profile's "unsupported" code, or a +CME/+CMS code."""

    def __init__(self, kind: ErrorKind, code: int = 0) -> None:
        super().__init__(f"{kind} {code}")
        self.kind: ErrorKind = kind
        self.code = code


def syntax_error() -> ErrorAnswer:
    return ErrorAnswer("error")


def unsupported() -> ErrorAnswer:
    return ErrorAnswer("unsupported")


def cme(code: int) -> ErrorAnswer:
    return ErrorAnswer("cme", code)


def cms(code: int) -> ErrorAnswer:
    return ErrorAnswer("cms", code)


_EXTENDED_PREFIXES = "+^$%*#!_"  # "!" Sierra, "_" Option, "$" Neoway/Longsung


def parse_command(line: str) -> ParsedCommand | None:
    """Parse a command line; None when it holds no `AT` prefix (modems ignore such lines)."""
    start = line.upper().find("AT")
    if start < 0:
        return None
    body = line[start + 2 :].strip()
    if not body:
        return ParsedCommand("", Op.EXEC)
    if body[0] in _EXTENDED_PREFIXES:
        end = len(body)
        for i, char in enumerate(body):
            if char in "=?":
                end = i
                break
        name, rest = body[:end].upper(), body[end:]
        if not rest:
            return ParsedCommand(name, Op.EXEC)
        if rest == "?":
            return ParsedCommand(name, Op.READ)
        if rest == "=?":
            return ParsedCommand(name, Op.TEST)
        if rest.startswith("="):
            return ParsedCommand(name, Op.SET, rest[1:])
        return ParsedCommand(name, Op.SET, rest)  # malformed; the handler rejects it
    # Basic commands: one letter (or & and a letter) and an optional number: E0, &F, S0=0.
    size = 2 if body[0] == "&" else 1
    name, rest = body[:size].upper(), body[size:]
    if rest.endswith("?"):
        return ParsedCommand(name, Op.READ, rest[:-1])
    return ParsedCommand(name, Op.EXEC if not rest else Op.SET, rest)


def split_args(raw: str) -> list[str | None]:
    """Comma-separated arguments; quotes removed; an empty argument is None."""
    args: list[str | None] = []
    current: list[str] = []
    quoted = False
    was_quoted = False
    for char in raw:
        if char == '"':
            quoted = not quoted
            was_quoted = True
        elif char == "," and not quoted:
            value = "".join(current)
            args.append(value if was_quoted else (value.strip() or None))
            current, was_quoted = [], False
        else:
            current.append(char)
    if quoted:
        raise syntax_error()
    value = "".join(current)
    args.append(value if was_quoted else (value.strip() or None))
    return args


def int_arg(
    args: list[str | None], index: int, low: int, high: int, default: int | None = None
) -> int:
    """Argument `index` as an integer in low..high; a syntax error otherwise."""
    value = args[index] if index < len(args) else None
    if value is None:
        if default is None:
            raise syntax_error()
        return default
    try:
        number = int(value)
    except ValueError:
        raise syntax_error() from None
    if not low <= number <= high:
        raise syntax_error()
    return number


def quoted(text: str) -> str:
    return f'"{text}"'


def int_setting(
    m: VirtualModem, cmd: ParsedCommand, prefix: str, attribute: str, high: int
) -> Answer:
    """A 0..high setting such as `AT+CMEE`: read it, list its range, or set it."""
    if cmd.op is Op.READ:
        return Answer([f"{prefix}: {getattr(m, attribute)}"])
    if cmd.op is Op.TEST:
        return Answer([f"{prefix}: (0-{high})"])
    setattr(m, attribute, int_arg(split_args(cmd.args), 0, 0, high, default=0))
    return OK
