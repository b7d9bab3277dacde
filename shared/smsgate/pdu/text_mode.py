"""27.005 text mode and USSD strings, to and from the TPDUs the rest of the codec speaks.

Text mode shows a message as fields (`<fo>`, `<dcs>`, `<length>`, a time as
`yy/MM/dd,hh:mm:ss±zz`) and `<data>`. With TP-UDHI set, or a UCS-2 / 8-bit message, or
`AT+CSCS="UCS2"`, `<data>` is hex (27.005 §3.1). These functions turn such fields into the
same `Deliver`/`StatusReport` a PDU decodes to, and a SUBMIT part into what AT+CSMP and
AT+CMGS take, so a text-mode modem joins the PDU pipeline instead of having its own.
Pure functions; PduError (a ValueError) names what is wrong.
"""

import datetime
import re
from dataclasses import dataclass

from . import gsm7
from .address import encode_address
from .deliver import Deliver, decode_deliver
from .errors import PduError
from .octets import from_hex, to_hex
from .status_report import StatusReport, decode_status_report, encode_status_report
from .timestamp import encode_timestamp

UDHI = 0x40  # TP-UDHI in the first octet
_VPF_RELATIVE = 0x10
_TEXT_TIME = re.compile(r"^(\d\d)/(\d\d)/(\d\d),(\d\d):(\d\d):(\d\d)([+-])(\d\d)$")


@dataclass(frozen=True, slots=True)
class UserData:
    """The text-mode view of a TPDU: first octet, TP-PID, TP-DCS, TP-UDL and TP-UD."""

    first: int
    protocol: int
    coding: int
    length: int
    data: bytes

    @property
    def septets(self) -> bool:
        """GSM 7-bit (TP-UDL counts septets) rather than octets."""
        return self.coding & 0xC0 in (0x00, 0x40) and self.coding & 0x0C == 0


def user_data(pdu_hex: str) -> UserData:
    """The fields of an SMS-DELIVER or SMS-SUBMIT PDU (hex, SMSC field included)."""
    raw = from_hex(pdu_hex)
    try:
        i = 1 + raw[0]
        first = raw[i]
        submit = first & 0x03 == 0x01
        i += 2 if submit else 1  # SUBMIT has TP-MR after the first octet
        i += 2 + (raw[i] + 1) // 2  # address: length in digits, type, semi-octets
        protocol, coding = raw[i], raw[i + 1]
        i += 2
        if submit:
            vpf = first & 0x18
            i += 1 if vpf == _VPF_RELATIVE else 7 if vpf else 0
        else:
            i += 7  # TP-SCTS
        return UserData(first, protocol, coding, raw[i], raw[i + 1 :])
    except IndexError:
        raise PduError(f"PDU {pdu_hex[:40]} is too short for its fields") from None


def text_time(moment: datetime.datetime) -> str:
    """A time as text mode prints it: yy/MM/dd,hh:mm:ss±zz (zz in quarter hours)."""
    offset = moment.utcoffset() or datetime.timedelta()
    quarters = int(offset.total_seconds() // 900)
    sign = "-" if quarters < 0 else "+"
    return f"{moment:%y/%m/%d,%H:%M:%S}{sign}{abs(quarters):02d}"


def parse_text_time(text: str) -> datetime.datetime:
    """`yy/MM/dd,hh:mm:ss±zz` (quotes allowed) as an aware datetime; years are 20yy."""
    match = _TEXT_TIME.match(text.strip().strip('"'))
    if match is None:
        raise PduError(f"not a text-mode time: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    quarters = int(match.group(8)) * (-1 if match.group(7) == "-" else 1)
    zone = datetime.timezone(datetime.timedelta(minutes=15 * quarters))
    try:
        return datetime.datetime(2000 + year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError as exc:
        raise PduError(f"text-mode time {text!r}: {exc}") from None


def septet_count(data: bytes) -> int:
    """TP-UDL of packed GSM 7-bit user data given only as octets (text mode sends no UDL).

    Seven spare bits at the end would read as one more '@'; they are taken as padding.
    """
    count = len(data) * 8 // 7
    if count and len(data) * 8 % 7 == 0 and gsm7.unpack(data, count)[-1] == 0:
        count -= 1
    return count


def submit_from_user_data(
    number: str, *, first: int, validity: int, protocol: int, coding: int, data: bytes
) -> str:
    """The SMS-SUBMIT PDU (hex, empty SMSC field) a modem builds from AT+CSMP and hex data."""
    length = septet_count(data) if coding & 0x0C == 0 else len(data)
    vp = bytes([validity]) if first & 0x18 == _VPF_RELATIVE else b""
    tpdu = bytes([first & 0xFF, 0]) + encode_address(number) + bytes([protocol, coding]) + vp
    return to_hex(b"\x00" + tpdu + bytes([length]) + data)


def deliver_from_text(
    sender: str,
    timestamp: datetime.datetime,
    fields: UserData,
    *,
    sender_type: int | None = None,
) -> Deliver:
    """The SMS-DELIVER a text-mode +CMGR/+CMT (with AT+CSDH=1) describes."""
    tpdu = bytes([fields.first & 0xFF]) + encode_address(sender, toa=sender_type)
    tpdu += bytes([fields.protocol, fields.coding]) + encode_timestamp(timestamp)
    tpdu += bytes([fields.length]) + fields.data
    return decode_deliver(to_hex(b"\x00" + tpdu))


def text_user_data(text: str, coding: int) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) of a text without a header, in the alphabet `coding` names."""
    if coding & 0x0C == 0:
        septets = gsm7.encode_septets(text)
        return len(septets), gsm7.pack(septets)
    data = text.encode("utf-16-be")
    return len(data), data


def report_from_text(
    reference: int,
    recipient: str,
    timestamp: datetime.datetime,
    discharge_time: datetime.datetime,
    status: int,
) -> StatusReport:
    """The SMS-STATUS-REPORT a text-mode +CDS / +CMGR describes."""
    pdu = encode_status_report(
        reference, recipient, timestamp=timestamp, discharge_time=discharge_time, status=status
    )
    return decode_status_report(pdu)


def pack_ussd(text: str) -> str:
    """A USSD string as packed GSM 7-bit in hex, as Huawei sticks take and give it."""
    return to_hex(gsm7.pack(gsm7.encode_septets(text), cr_pad=True))


def unpack_ussd(packed: str) -> str | None:
    """Packed GSM 7-bit hex back to text; None when `packed` is not such a string."""
    try:
        raw = bytes.fromhex(packed)
    except ValueError:
        return None
    if not raw:
        return None
    septets = gsm7.unpack(raw, len(raw) * 8 // 7)
    if len(raw) % 7 == 0 and septets and septets[-1] == gsm7.CR:
        septets.pop()  # 23.038 6.1.2.3.1: the CR that pads seven spare bits
    return gsm7.decode_septets(septets)
