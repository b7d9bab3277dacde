"""TP-ST: what a status report says happened to a message (23.040 9.2.3.15)."""

import enum


class ReportState(enum.StrEnum):
    DELIVERED = "delivered"
    PENDING = "pending"
    FAILED = "failed"


_REASONS = {
    0x00: "received by the recipient",
    0x01: "forwarded to the recipient, delivery not confirmed",
    0x02: "replaced by the SMSC",
    0x20: "congestion",
    0x21: "recipient busy",
    0x22: "no response from the recipient",
    0x23: "service rejected",
    0x24: "quality of service not available",
    0x25: "error in the recipient's handset",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by the recipient",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "validity period expired",
    0x47: "deleted by the sender",
    0x48: "deleted by the SMSC administration",
    0x49: "message does not exist",
}


def interpret_status(status: int) -> tuple[ReportState, str]:
    """The delivery state and a readable reason for a TP-ST value."""
    if status > 0x7F:
        # Bit 7 is reserved; 23.040 lets a receiver treat such values as a failure.
        return ReportState.FAILED, f"failed: reserved status 0x{status:02X}"
    group = status & 0x60
    detail = status & 0x1F
    # Each group's values 0x10-0x1F are SMSC-specific; the rest without a name are reserved.
    known = _REASONS.get(
        status if group != 0x60 else status - 0x40,
        f"SMSC-specific status 0x{status:02X}"
        if detail >= 0x10
        else f"reserved status 0x{status:02X}",
    )
    if group == 0x00:
        return ReportState.DELIVERED, f"delivered: {known}"
    if group == 0x20:
        return ReportState.PENDING, f"pending: {known}, SMSC still trying"
    if group == 0x40:
        return ReportState.FAILED, f"failed: {known}"
    return ReportState.FAILED, f"failed: {known}, SMSC stopped trying"
