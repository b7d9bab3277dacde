"""SMS-STATUS-REPORT: the network's word on whether a submitted message arrived."""

import datetime
from dataclasses import dataclass

from .address import encode_address, encode_smsc, read_address, read_smsc
from .dcs import Alphabet, parse_dcs
from .errors import PduError
from .octets import Reader, from_hex, to_hex
from .status import ReportState, interpret_status
from .timestamp import decode_timestamp, encode_timestamp
from .userdata import read_user_data

MTI_STATUS_REPORT = 0x02
_NO_MORE_MESSAGES = 0x04
_UDHI = 0x40
_PI_PID = 0x01
_PI_DCS = 0x02
_PI_UDL = 0x04
_PI_EXTENSION = 0x80


@dataclass(frozen=True, slots=True)
class StatusReport:
    smsc: str | None
    message_reference: int
    recipient: str
    timestamp: datetime.datetime  # when the SMSC accepted the message (TP-SCTS)
    discharge_time: datetime.datetime  # when it was delivered or given up (TP-DT)
    status: int
    state: ReportState
    reason: str
    protocol_id: int | None = None
    data_coding: int | None = None
    text: str = ""


def encode_status_report(
    message_reference: int,
    recipient: str,
    *,
    timestamp: datetime.datetime,
    discharge_time: datetime.datetime,
    status: int,
    smsc: str | None = None,
) -> str:
    """One SMS-STATUS-REPORT PDU (hex with the SMSC field), without the optional fields."""
    if not 0 <= message_reference <= 0xFF:
        raise PduError(f"message reference {message_reference} is outside 0-255")
    if not 0 <= status <= 0xFF:
        raise PduError(f"status {status} is outside 0-255")
    tpdu = bytes([MTI_STATUS_REPORT | _NO_MORE_MESSAGES, message_reference])
    tpdu += encode_address(recipient) + encode_timestamp(timestamp)
    tpdu += encode_timestamp(discharge_time) + bytes([status])
    return to_hex(encode_smsc(smsc) + tpdu)


def read_status_report(reader: Reader, smsc: str | None) -> StatusReport:
    """Read an SMS-STATUS-REPORT TPDU."""
    first = reader.octet("first octet")
    if first & 0x03 != MTI_STATUS_REPORT:
        raise PduError(f"not an SMS-STATUS-REPORT: TP-MTI is {first & 0x03}")
    reference = reader.octet("TP-MR")
    recipient = read_address(reader, "recipient address")
    timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
    discharge_time = decode_timestamp(reader.take(7, "TP-DT"))
    status = reader.octet("TP-ST")
    state, reason = interpret_status(status)
    protocol_id, data_coding, text = _read_optional(reader, has_header=bool(first & _UDHI))
    return StatusReport(
        smsc=smsc,
        message_reference=reference,
        recipient=recipient,
        timestamp=timestamp,
        discharge_time=discharge_time,
        status=status,
        state=state,
        reason=reason,
        protocol_id=protocol_id,
        data_coding=data_coding,
        text=text,
    )


def _read_optional(reader: Reader, *, has_header: bool) -> tuple[int | None, int | None, str]:
    """TP-PI and the TP-PID/DCS/UDL/UD it announces; (None, None, "") if absent or garbled."""
    # Everything a report is for comes before TP-PI, so a garbled optional part must not cost
    # the delivery status (SMSCs are known to pad reports).
    if not reader.remaining:
        return None, None, ""
    indicator = reader.octet("TP-PI")
    try:
        extension = indicator
        while extension & _PI_EXTENSION:
            extension = reader.octet("TP-PI extension")
        protocol_id = reader.octet("TP-PID") if indicator & _PI_PID else None
        data_coding = reader.octet("TP-DCS") if indicator & _PI_DCS else None
        text = ""
        if indicator & _PI_UDL:
            alphabet = Alphabet.GSM7 if data_coding is None else parse_dcs(data_coding).alphabet
            text = read_user_data(reader, alphabet, has_header=has_header).text
    except PduError:
        return None, None, ""
    return protocol_id, data_coding, text


def decode_status_report(pdu_hex: str, *, smsc_included: bool = True) -> StatusReport:
    """Decode an SMS-STATUS-REPORT PDU."""
    reader = Reader(from_hex(pdu_hex))
    smsc = read_smsc(reader) if smsc_included else None
    return read_status_report(reader, smsc)
