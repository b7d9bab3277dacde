"""Replies of a modem read into values: registration, signal, storages, identity, errors.

Pure functions of an `at_parser.Reply` (or its text): no I/O, each one a unit test.
"""

from __future__ import annotations

import contextlib
import re

from smsgate_agent.at_parser import Reply, Status, split_fields, unquote
from smsgate_agent.cms import CME_BUSY, describe_cme, describe_cms

# Storages in order of preference: the SIM first (what every modem has), then combined.
STORAGE_PREFERENCE = ("SM", "MT", "ME")
# +CMS codes that mean "busy right now" during initialisation (SIM busy, vendor busy).
CMS_BUSY = frozenset({314, 512, 515})

_MR = re.compile(r"^\s*(\d+)")


def dbm_from_csq(rssi: int) -> int | None:
    """`+CSQ: <rssi>` (0-31, 99 unknown) in dBm (27.007 §8.5)."""
    if not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


def registration_name(stat: int) -> str:
    """<stat> of +CREG/+CGREG/+CEREG as a word."""
    if stat in (1, 6, 9):  # home; SMS-only home; CSFB not preferred, home
        return "home"
    if stat in (5, 7, 10):
        return "roaming"
    return {0: "unregistered", 2: "searching", 3: "denied"}.get(stat, "unknown")


def registered(name: str | None) -> bool:
    return name in ("home", "roaming")


def parse_registration(reply: Reply, prefix: str) -> int | None:
    """The <stat> of a `+CREG: <n>,<stat>[,...]` reply."""
    args = reply.first(prefix)
    if args is None:
        return None
    fields = split_fields(args)
    value = fields[1] if len(fields) >= 2 else fields[0]
    return int(value) if value.isdigit() else None


def parse_csq(reply: Reply) -> int | None:
    args = reply.first("+CSQ")
    if args is None:
        return None
    value = split_fields(args)[0]
    return dbm_from_csq(int(value)) if value.isdigit() else None


def parse_storages(reply: Reply) -> list[list[str]]:
    """`+CPMS: ("SM","ME"),("SM","ME"),("SM")` as a list per memory slot."""
    args = reply.first("+CPMS") or ""
    groups = re.findall(r"\(([^)]*)\)", args)
    if not groups:  # some firmwares leave the parentheses out for a single list
        groups = [args]
    return [[unquote(v).upper() for v in split_fields(g) if v] for g in groups]


def choose_storage(options: list[list[str]]) -> str | None:
    """The preferred storage every slot (read, write, receive) offers."""
    if not options:
        return None
    common = set(options[0]).intersection(*options[1:])
    for name in STORAGE_PREFERENCE:
        if name in common:
            return name
    return sorted(common)[0] if common else None


def normalise_iccid(raw: str) -> str | None:
    """An ICCID from any vendor's answer: quotes, `F` padding and swapped nibbles undone."""
    value = unquote(raw.split(",")[-1] if raw.count(",") >= 2 else raw).upper().rstrip("F")
    if not value or not value.isalnum():
        return None
    # ^ICCID (Huawei) and +CRSM give the SIM's raw bytes: every nibble pair swapped.
    if value.startswith("98") and len(value) % 2 == 0:
        swapped = "".join(value[i + 1] + value[i] for i in range(0, len(value), 2))
        value = swapped.rstrip("F")
    if not value.isdigit() or not 18 <= len(value) <= 22:
        return None
    return value


def find_digits(reply: Reply, prefix: str, low: int, high: int) -> str | None:
    """The first run of `low`-`high` digits in a reply (bare or after `prefix:`)."""
    candidates = [unquote(line.args) for line in reply.with_prefix(prefix)] + reply.texts
    for candidate in candidates:
        match = re.search(rf"\b(\d{{{low},{high}}})\b", candidate)
        if match:
            return match.group(1)
    return None


def parse_operator(reply: Reply) -> str | None:
    """The operator name of `+COPS: <mode>,<format>,"<oper>"[,<act>]`."""
    args = reply.first("+COPS")
    if args is None:
        return None
    fields = split_fields(args)
    return unquote(fields[2]) or None if len(fields) >= 3 else None


def parse_smsc(reply: Reply) -> str | None:
    args = reply.first("+CSCA")
    if args is None:
        return None
    number = unquote(split_fields(args)[0])
    return number or None


def decode_ussd(text: str, dcs: int | None) -> str:
    """A `+CUSD` string: UCS-2 comes as hex on most modems whatever AT+CSCS says."""
    looks_hex = len(text) % 4 == 0 and bool(re.fullmatch(r"[0-9A-Fa-f]+", text))
    if looks_hex and dcs is not None and (dcs & 0x0C == 0x08 or dcs == 0x48):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            return bytes.fromhex(text).decode("utf-16-be")
    return text


def is_busy(reply: Reply) -> bool:
    if reply.status is Status.CME_ERROR:
        return reply.code in CME_BUSY
    if reply.status is Status.CMS_ERROR:
        return reply.code in CMS_BUSY
    return False


def error_text(reply: Reply) -> str:
    if reply.status is Status.CMS_ERROR:
        return describe_cms(reply.code)
    if reply.status is Status.CME_ERROR:
        return describe_cme(reply.code)
    return reply.final or reply.status.value


def message_reference(reply: Reply) -> int | None:
    """TP-MR of `+CMGS: <mr>` (one byte), or None when the modem gave none."""
    args = reply.first("+CMGS")
    match = _MR.match(args) if args is not None else None
    return int(match.group(1)) & 0xFF if match else None


def first_text(reply: Reply, prefix: str) -> str | None:
    """The answer of an identity command (`AT+CGMI`): after `prefix:`, or the bare line."""
    if not reply.ok:
        return None
    args = reply.first(prefix)
    if args is not None:
        return unquote(args) or None
    return reply.texts[0] if reply.texts else None
