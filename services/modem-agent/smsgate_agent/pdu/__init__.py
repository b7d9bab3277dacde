"""SMS PDU codec (3GPP TS 23.040 / 23.038): pure functions, no I/O.

Every failure to decode or encode raises PduError, a ValueError.
"""

from .dcs import Alphabet
from .deliver import Deliver, decode_deliver, encode_deliver
from .errors import PduError
from .gsm7 import gsm7_encodable
from .message import decode, tpdu_length
from .segments import Segmentation, count_segments, split_for_deliver
from .status import DeliveryState
from .status_report import StatusReport, decode_status_report, encode_status_report
from .submit import Submit, SubmitPart, decode_submit, encode_submit
from .udh import Concat

__all__ = [
    "Alphabet",
    "Concat",
    "Deliver",
    "DeliveryState",
    "PduError",
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
