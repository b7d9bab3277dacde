"""SMS-DELIVER: what modems hand the agent, and what the simulator sends as the network."""

import datetime
from dataclasses import dataclass

from .address import encode_address, encode_smsc, read_address, read_smsc
from .dcs import Alphabet, build_dcs, parse_dcs
from .errors import PduError
from .octets import Reader, from_hex, to_hex
from .segments import choose_alphabet
from .timestamp import decode_timestamp, encode_timestamp
from .udh import Concat, encode_udh
from .userdata import encode_user_data, read_user_data

MTI_DELIVER = 0x00
_NO_MORE_MESSAGES = 0x04  # TP-MMS is set when nothing more is waiting
_STATUS_REPORT_INDICATION = 0x20
_UDHI = 0x40


@dataclass(frozen=True, slots=True)
class Deliver:
    smsc: str | None
    sender: str
    timestamp: datetime.datetime
    text: str
    alphabet: Alphabet
    concat: Concat | None
    protocol_id: int
    data_coding: int
    message_class: int | None
    port: tuple[int, int] | None  # (destination, source)
    data: bytes
    status_report_indication: bool
    more_messages: bool


def encode_deliver(
    sender: str,
    text: str,
    *,
    timestamp: datetime.datetime,
    smsc: str | None = None,
    concat: Concat | None = None,
    alphabet: Alphabet | None = None,
    status_report_indication: bool = False,
    more_messages: bool = False,
    port: tuple[int, int] | None = None,
) -> str:
    """One SMS-DELIVER PDU (hex with the SMSC field) holding exactly `text`."""
    chosen = alphabet or choose_alphabet(text)
    header = encode_udh(concat, port)
    udl, ud = encode_user_data(text, chosen, header)
    first = MTI_DELIVER
    if not more_messages:
        first |= _NO_MORE_MESSAGES
    if status_report_indication:
        first |= _STATUS_REPORT_INDICATION
    if header:
        first |= _UDHI
    tpdu = bytes([first]) + encode_address(sender) + bytes([0x00, build_dcs(chosen)])
    tpdu += encode_timestamp(timestamp) + bytes([udl]) + ud
    return to_hex(encode_smsc(smsc) + tpdu)


def read_deliver(reader: Reader, smsc: str | None) -> Deliver:
    """Read an SMS-DELIVER TPDU."""
    first = reader.octet("first octet")
    if first & 0x03 != MTI_DELIVER:
        raise PduError(f"not an SMS-DELIVER: TP-MTI is {first & 0x03}")
    sender = read_address(reader, "originating address")
    protocol_id = reader.octet("TP-PID")
    data_coding = reader.octet("TP-DCS")
    coding = parse_dcs(data_coding)
    timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
    user_data = read_user_data(reader, coding.alphabet, has_header=bool(first & _UDHI))
    header = user_data.header
    return Deliver(
        smsc=smsc,
        sender=sender,
        timestamp=timestamp,
        text=user_data.text,
        alphabet=coding.alphabet,
        concat=header.concat if header else None,
        protocol_id=protocol_id,
        data_coding=data_coding,
        message_class=coding.message_class,
        port=header.port if header else None,
        data=user_data.data,
        status_report_indication=bool(first & _STATUS_REPORT_INDICATION),
        more_messages=not first & _NO_MORE_MESSAGES,
    )


def decode_deliver(pdu_hex: str, *, smsc_included: bool = True) -> Deliver:
    """Decode an SMS-DELIVER PDU."""
    reader = Reader(from_hex(pdu_hex))
    smsc = read_smsc(reader) if smsc_included else None
    return read_deliver(reader, smsc)
