"""TP-ST interpretation and the optional fields after it."""

import datetime

import pytest
from smsgate.pdu import (
    ReportState,
    StatusReport,
    decode,
    decode_status_report,
    encode_status_report,
)

NOW = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
DELIVERED, PENDING, FAILED = ReportState.DELIVERED, ReportState.PENDING, ReportState.FAILED


def _report(status: int) -> StatusReport:
    pdu = encode_status_report(
        42, "+491701234567", timestamp=NOW, discharge_time=NOW, status=status
    )
    return decode_status_report(pdu)


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [
        (0x00, DELIVERED, "delivered: received by the recipient"),
        (0x01, DELIVERED, "delivered: forwarded to the recipient, delivery not confirmed"),
        (0x02, DELIVERED, "delivered: replaced by the SMSC"),
        (0x03, DELIVERED, "delivered: reserved status 0x03"),
        (0x1F, DELIVERED, "delivered: SMSC-specific status 0x1F"),
        (0x20, PENDING, "pending: congestion, SMSC still trying"),
        (0x21, PENDING, "pending: recipient busy, SMSC still trying"),
        (0x25, PENDING, "pending: error in the recipient's handset, SMSC still trying"),
        (0x2A, PENDING, "pending: reserved status 0x2A, SMSC still trying"),
        (0x35, PENDING, "pending: SMSC-specific status 0x35, SMSC still trying"),
        (0x40, FAILED, "failed: remote procedure error"),
        (0x43, FAILED, "failed: not obtainable"),
        (0x46, FAILED, "failed: validity period expired"),
        (0x49, FAILED, "failed: message does not exist"),
        (0x4F, FAILED, "failed: reserved status 0x4F"),
        (0x5A, FAILED, "failed: SMSC-specific status 0x5A"),
        (0x60, FAILED, "failed: congestion, SMSC stopped trying"),
        (0x62, FAILED, "failed: no response from the recipient, SMSC stopped trying"),
        (0x66, FAILED, "failed: reserved status 0x66, SMSC stopped trying"),
        (0x7F, FAILED, "failed: SMSC-specific status 0x7F, SMSC stopped trying"),
        (0x80, FAILED, "failed: reserved status 0x80"),
        (0xFF, FAILED, "failed: reserved status 0xFF"),
    ],
)
def test_status_meaning(status: int, state: ReportState, reason: str) -> None:
    report = _report(status)
    assert (report.status, report.state, report.reason) == (status, state, reason)


def test_report_round_trip() -> None:
    pdu = encode_status_report(
        7, "0829200000", timestamp=NOW, discharge_time=NOW, status=0, smsc="+27841004005"
    )
    assert decode(pdu) == StatusReport(
        smsc="+27841004005",
        message_reference=7,
        recipient="0829200000",
        timestamp=NOW,
        discharge_time=NOW,
        status=0,
        state=DELIVERED,
        reason="delivered: received by the recipient",
    )


# A report up to the first digit of its TP-ST; each tail starts with the second digit (0).
BASE = "0006D60B911326880736F411101171955140111011719571400"


@pytest.mark.parametrize(
    ("tail", "protocol_id", "data_coding", "text"),
    [
        ("0", None, None, ""),  # nothing after TP-ST
        ("000", None, None, ""),  # TP-PI announcing nothing
        ("00100", 0, None, ""),  # TP-PID only
        ("007000005C8329BFD06", 0, 0, "Hello"),  # PID, DCS (GSM7), UDL 5 and text
        ("006080400480065", None, 8, "He"),  # DCS UCS-2 and text
        ("0810100", 0, None, ""),  # an extension TP-PI octet is skipped
        ("007000009", None, None, ""),  # garbled optional part: the status still counts
        ("0FF", None, None, ""),  # padding-like TP-PI with nothing behind it
    ],
)
def test_optional_fields_after_status(
    tail: str, protocol_id: int | None, data_coding: int | None, text: str
) -> None:
    report = decode_status_report(BASE + tail)
    assert (report.message_reference, report.status, report.state) == (0xD6, 0, DELIVERED)
    assert (report.protocol_id, report.data_coding, report.text) == (protocol_id, data_coding, text)
