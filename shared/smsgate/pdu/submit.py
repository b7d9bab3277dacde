"""SMS-SUBMIT: what the agent sends with AT+CMGS, and what the simulator receives."""

import datetime
from dataclasses import dataclass

from .address import encode_address, encode_smsc, read_address, read_smsc
from .dcs import Alphabet, build_dcs, parse_dcs
from .errors import PduError
from .octets import Reader, from_hex, to_hex
from .segments import split_text
from .timestamp import decode_timestamp, encode_timestamp
from .udh import Concat, encode_udh
from .userdata import encode_user_data, read_user_data
from .validity import decode_enhanced, decode_relative, encode_relative

MTI_SUBMIT = 0x01
_REJECT_DUPLICATES = 0x04
_VPF_RELATIVE = 0x10
_VPF_ENHANCED = 0x08
_VPF_ABSOLUTE = 0x18
_STATUS_REPORT_REQUEST = 0x20
_UDHI = 0x40


@dataclass(frozen=True, slots=True)
class SubmitPart:
    """One PDU to send: hex including the SMSC field, and the length AT+CMGS=<n> wants."""

    pdu: str
    tpdu_length: int
    concat: Concat | None
    text: str


@dataclass(frozen=True, slots=True)
class Submit:
    smsc: str | None
    number: str
    text: str
    alphabet: Alphabet
    concat: Concat | None
    message_reference: int
    status_report: bool
    validity: datetime.timedelta | datetime.datetime | None
    protocol_id: int
    data_coding: int
    data: bytes
    message_class: int | None = None
    reject_duplicates: bool = False
    port: tuple[int, int] | None = None


def _validity_field(validity: datetime.timedelta | datetime.datetime | None) -> tuple[int, bytes]:
    if validity is None:
        return 0, b""
    if isinstance(validity, datetime.datetime):
        return _VPF_ABSOLUTE, encode_timestamp(validity)
    return _VPF_RELATIVE, bytes([encode_relative(validity)])


def encode_submit(
    number: str,
    text: str,
    *,
    smsc: str | None = None,
    status_report: bool = False,
    message_reference: int = 0,
    validity: datetime.timedelta | datetime.datetime | None = None,
    concat_reference: int = 0,
    wide_reference: bool = False,
    alphabet: Alphabet | None = None,
    message_class: int | None = None,
    reject_duplicates: bool = False,
) -> list[SubmitPart]:
    """Encode `text` to `number` as SMS-SUBMIT PDUs, concatenated when long.

    A timedelta validity is sent as a relative period (rounded up), a datetime as absolute.
    """
    if not 0 <= message_reference <= 0xFF:
        raise PduError(f"message reference {message_reference} is outside 0-255")
    limit = 0xFFFF if wide_reference else 0xFF
    if not 0 <= concat_reference <= limit:
        raise PduError(f"concatenation reference {concat_reference} is outside 0-{limit}")
    chosen, texts = split_text(text, alphabet=alphabet, wide_reference=wide_reference)
    smsc_field = encode_smsc(smsc)
    address = encode_address(number)
    vpf, vp = _validity_field(validity)
    dcs = build_dcs(chosen, message_class)
    first = MTI_SUBMIT | vpf
    if status_report:
        first |= _STATUS_REPORT_REQUEST
    if reject_duplicates:
        first |= _REJECT_DUPLICATES
    parts: list[SubmitPart] = []
    # Every part carries the same TP-MR: modems put their own in and report it in +CMGS.
    for sequence, part_text in enumerate(texts, start=1):
        concat = None
        if len(texts) > 1:
            concat = Concat(concat_reference, len(texts), sequence, wide_reference)
        header = encode_udh(concat)
        udl, ud = encode_user_data(part_text, chosen, header)
        tpdu = bytes([first | (_UDHI if header else 0), message_reference])
        tpdu += address + bytes([0x00, dcs]) + vp + bytes([udl]) + ud
        parts.append(SubmitPart(to_hex(smsc_field + tpdu), len(tpdu), concat, part_text))
    return parts


def read_submit(reader: Reader, smsc: str | None) -> Submit:
    """Read an SMS-SUBMIT TPDU."""
    first = reader.octet("first octet")
    if first & 0x03 != MTI_SUBMIT:
        raise PduError(f"not an SMS-SUBMIT: TP-MTI is {first & 0x03}")
    reference = reader.octet("TP-MR")
    number = read_address(reader, "destination address")
    protocol_id = reader.octet("TP-PID")
    data_coding = reader.octet("TP-DCS")
    coding = parse_dcs(data_coding)
    vpf = first & 0x18
    validity: datetime.timedelta | datetime.datetime | None = None
    if vpf == _VPF_RELATIVE:
        validity = decode_relative(reader.octet("TP-VP"))
    elif vpf == _VPF_ABSOLUTE:
        validity = decode_timestamp(reader.take(7, "TP-VP"))
    elif vpf == _VPF_ENHANCED:
        validity = decode_enhanced(reader.take(7, "TP-VP"))
    user_data = read_user_data(reader, coding.alphabet, has_header=bool(first & _UDHI))
    header = user_data.header
    return Submit(
        smsc=smsc,
        number=number,
        text=user_data.text,
        alphabet=coding.alphabet,
        concat=header.concat if header else None,
        message_reference=reference,
        status_report=bool(first & _STATUS_REPORT_REQUEST),
        validity=validity,
        protocol_id=protocol_id,
        data_coding=data_coding,
        data=user_data.data,
        message_class=coding.message_class,
        reject_duplicates=bool(first & _REJECT_DUPLICATES),
        port=header.port if header else None,
    )


def decode_submit(pdu_hex: str, *, smsc_included: bool = True) -> Submit:
    """Decode an SMS-SUBMIT PDU."""
    reader = Reader(from_hex(pdu_hex))
    smsc = read_smsc(reader) if smsc_included else None
    return read_submit(reader, smsc)
