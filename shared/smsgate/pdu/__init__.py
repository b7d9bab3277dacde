"""SMS PDU codec (3GPP TS 23.040 / 23.038): pure functions, no I/O.

Every failure to decode or encode raises PduError (a ValueError) with a message saying what
is wrong: bad hex, a truncated PDU, a length octet that overruns the data, an impossible
timestamp, a text or number that cannot be encoded, a text that does not fit.

Decoding is lenient only where real modems and SMSCs are known to deviate:
- a TP-UDL above the 23.040 maximum (160 septets / 140 octets) reads what is there;
- the time-zone octet is read arithmetically (a modem sends C2 for +08:00);
- a garbled optional tail (TP-PI onwards) of a status report is ignored;
- an SMSC field and address that are odd but self-consistent decode as the bytes say: the
  "semi-invalid" ZTE report gives SMSC "+1" and recipient "+#08427829207025" (semi-octet
  0xB is '#'), keeping TP-MR 28 and TP-ST 0;
- unknown and malformed UDH elements are skipped; lone UCS-2 surrogates become U+FFFD.
Two-digit years are 20yy. International numbers carry a leading '+'.
"""

from .dcs import Alphabet
from .deliver import Deliver, decode_deliver, encode_deliver
from .errors import PduError
from .gsm7 import gsm7_encodable
from .message import decode, tpdu_length
from .segments import Segmentation, count_segments, split_for_deliver
from .status import ReportState
from .status_report import StatusReport, decode_status_report, encode_status_report
from .submit import Submit, SubmitPart, decode_submit, encode_submit
from .udh import Concat

__all__ = [
    "Alphabet",
    "Concat",
    "Deliver",
    "PduError",
    "ReportState",
    "Segmentation",
    "StatusReport",
    "Submit",
    "SubmitPart",
    "count_segments",
    "decode",
    "decode_deliver",
    "decode_status_report",
    "decode_submit",
    "encode_deliver",
    "encode_status_report",
    "encode_submit",
    "gsm7_encodable",
    "split_for_deliver",
    "tpdu_length",
]
