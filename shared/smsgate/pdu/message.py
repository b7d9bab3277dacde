"""Decoding a PDU of any type, chosen by its TP-MTI."""

from .address import read_smsc
from .deliver import Deliver, read_deliver
from .errors import PduError
from .octets import Reader, from_hex
from .status_report import StatusReport, read_status_report
from .submit import Submit, read_submit


def decode(pdu_hex: str, *, smsc_included: bool = True) -> Deliver | Submit | StatusReport:
    """Decode an SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT PDU."""
    reader = Reader(from_hex(pdu_hex))
    smsc = read_smsc(reader) if smsc_included else None
    mti = reader.peek("first octet") & 0x03
    if mti == 0:
        return read_deliver(reader, smsc)
    if mti == 1:
        return read_submit(reader, smsc)
    if mti == 2:
        return read_status_report(reader, smsc)
    raise PduError("TP-MTI 3 is reserved; this is not an SMS PDU")


def tpdu_length(pdu_hex: str, *, smsc_included: bool = True) -> int:
    """The length AT+CMGS=<n> needs for a PDU: its octets after the SMSC field."""
    reader = Reader(from_hex(pdu_hex))
    if smsc_included:
        reader.take(reader.octet("SMSC length"), "SMSC field")
    return reader.remaining
