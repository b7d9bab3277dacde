"""SMS on a text-mode-only modem: the commands to send a part and the parsing of what comes back.

A port whose modem refuses `AT+CMGF=0` runs with `AT+CMGF=1`, `AT+CSCS="UCS2"` and
`AT+CSDH=1`: every number and text is then UCS-2 hex, every header carries `<fo>`,
`<dcs>` and `<length>`, and a concatenated part's user data is hex with TP-UDHI set
(27.005 §3.1). Parts and messages are turned into and out of the same TPDUs the PDU path
uses (smsgate.pdu.text_mode), so reassembly and report matching do not care about the mode.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smsgate.pdu import Deliver, PduError, StatusReport, SubmitPart
from smsgate.pdu.text_mode import (
    UDHI,
    UserData,
    deliver_from_text,
    parse_text_time,
    report_from_text,
    text_user_data,
    user_data,
)

from smsgate_agent.at_parser import split_fields, unquote

SETUP = ('AT+CSCS="UCS2"', "AT+CSDH=1")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{4})+$")


@dataclass(frozen=True, slots=True)
class TextPart:
    """One part in text mode: AT+CSMP to set it up, AT+CMGS to send, the data after `>`."""

    sequence: int
    csmp: str
    command: str
    payload: str


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def from_ucs2(value: str) -> str:
    """A field as a modem in AT+CSCS="UCS2" prints it; other fields pass unchanged."""
    value = unquote(value)
    if not _HEX.match(value):
        return value
    try:
        decoded = bytes.fromhex(value).decode("utf-16-be")
    except UnicodeDecodeError:
        return value
    # Digits that happen to be hex ("12345678") decode to CJK: keep them as they are.
    if decoded.isprintable() and all(ord(c) < 0x250 for c in decoded):
        return decoded
    return value


def ambiguous(part: SubmitPart) -> bool:
    """A GSM 7-bit part whose last septet is '@' ending on an octet boundary: as hex user
    data it reads one '@' short (smsgate.pdu.text_mode.septet_count)."""
    fields = user_data(part.pdu)
    data = fields.data
    if not (fields.first & UDHI and fields.septets) or len(data) * 8 % 7:
        return False
    return fields.length == len(data) * 8 // 7 and data[-1] >> 1 == 0


def text_parts(number: str, parts: list[SubmitPart]) -> list[TextPart]:
    """What to send for each part: the text itself, or with TP-UDHI its user data in hex."""
    toa = 145 if number.startswith("+") else 129
    command = f'AT+CMGS="{ucs2(number)}",{toa}'
    out = []
    for sequence, part in enumerate(parts, start=1):
        fields = user_data(part.pdu)
        csmp = f"AT+CSMP={fields.first},167,{fields.protocol},{fields.coding}"
        payload = fields.data.hex().upper() if fields.first & UDHI else ucs2(part.text)
        out.append(TextPart(sequence, csmp, command, payload))
    return out


def read_deliver(fields: list[str], data: str) -> Deliver:
    """`"<oa>",[<alpha>],"<scts>",<tooa>,<fo>,<pid>,<dcs>,"<sca>",<tosca>,<length>` + data."""
    if len(fields) < 10:
        raise PduError(f"text-mode header without AT+CSDH=1 details: {','.join(fields)}")
    sender = from_ucs2(fields[0])
    timestamp = parse_text_time(fields[2])
    first, protocol, coding, length = (int(fields[i]) for i in (4, 5, 6, 9))
    if first & UDHI or coding & 0x0C == 0x04:
        raw = bytes.fromhex(data)  # user data as hex octets (27.005 §3.1)
    else:
        length, raw = text_user_data(from_ucs2(data), coding)
    return deliver_from_text(sender, timestamp, UserData(first, protocol, coding, length, raw))


def read_report(fields: list[str]) -> StatusReport:
    """`<fo>,<mr>,"<ra>",<tora>,"<scts>","<dt>",<st>` (+CDS, and +CMGR after <stat>)."""
    if len(fields) < 7:
        raise PduError(f"text-mode status report too short: {','.join(fields)}")
    return report_from_text(
        int(fields[1]),
        from_ucs2(fields[2]),
        parse_text_time(fields[4]),
        parse_text_time(fields[5]),
        int(fields[6]),
    )


def read_stored(args: str, data: str | None) -> Deliver | StatusReport | None:
    """A text-mode `+CMGR:` (args after the colon, `<stat>` first) and its data line.

    None for what we do not hand over (a stored SUBMIT, a header without its data).
    """
    stat, *fields = split_fields(args)
    if fields and fields[0].isdigit():
        return read_report(fields)
    if data is None or unquote(stat).upper().startswith("STO"):
        return None  # a message someone stored to send: not ours to hand over
    return read_deliver(fields, data)


def read_direct(name: str, args: str, data: str | None) -> Deliver | StatusReport | None:
    """A text-mode `+CMT:` (with its data line) or `+CDS:`."""
    fields = split_fields(args)
    if name == "+CDS":
        return read_report(fields)
    return read_deliver(fields, data) if data is not None else None


def listed_indexes(args_lines: list[str]) -> list[int]:
    """The indexes of a text-mode `+CMGL:` listing (read each one with `AT+CMGR`)."""
    indexes = []
    for args in args_lines:
        first = split_fields(args)[0]
        if first.isdigit():
            indexes.append(int(first))
    return indexes
