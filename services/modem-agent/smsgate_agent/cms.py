"""What `+CMS ERROR` and `+CME ERROR` codes mean, and what a sender should do about them.

Codes follow 3GPP TS 27.005 §3.2.5 (CMS) and TS 27.007 §9.2 (CME). Modems in verbose
mode (`AT+CMEE=2`, or firmware that ignores `AT+CMEE=1`) print text instead of a number;
`cms_code`/`cme_code` turn the usual texts back into numbers.
"""

from __future__ import annotations

from enum import StrEnum


class SendErrorKind(StrEnum):
    """What a failed send means for the message."""

    PERMANENT = "permanent"  # the network or SIM refused this message: fail it
    TEMPORARY = "temporary"  # worth trying again after a pause
    AMBIGUOUS = "ambiguous"  # the modem does not say; retry a little, then give up


# Refused for this message or this SIM: retrying the same PDU will not help.
PERMANENT_CMS = frozenset({1, 8, 10, 21, 28, 29, 30, 50, 69, 304, 305, 330})
# Congestion, no service for a moment, a busy SIM or modem.
TEMPORARY_CMS = frozenset({38, 41, 42, 47, 331, 332, 512, 513, 514, 515})
AMBIGUOUS_CMS = frozenset({500})

CMS_TEXT: dict[int, str] = {
    1: "unassigned (unallocated) number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    96: "invalid mandatory information",
    111: "protocol error, unspecified",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
    512: "SMS in progress (vendor)",
    513: "lower layer failure (vendor)",
    514: "network busy (vendor)",
    515: "device busy (vendor)",
}

CME_TEXT: dict[int, str] = {
    0: "phone failure",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    100: "unknown",
    515: "device busy (vendor)",
}

# CME codes that mean "the SIM or modem is still starting up: ask again shortly".
CME_BUSY = frozenset({14, 515})
# CME codes about a SIM that cannot be used without a person fixing it.
CME_SIM_FATAL = frozenset({10, 12, 13, 15, 16, 18})

# Verbose texts seen from real firmware, beyond the standard tables.
_EXTRA_CMS = {
    "sim busy": 314,
    "unknown error": 500,
    "network busy": 514,
    "sms in progress": 512,
}
_EXTRA_CME = {
    "sim busy": 14,
    "sim not ready": 14,
    "incorrect parameters": 50,
    "unknown error": 100,
}


def _lookup(text: str, table: dict[int, str], extra: dict[str, int]) -> int | None:
    key = text.strip().strip('"').strip().lower()
    if key.isdigit():
        return int(key)
    if key in extra:
        return extra[key]
    for code, meaning in table.items():
        if meaning.lower() == key:
            return code
    return None


def cms_code(text: str) -> int | None:
    """The number behind a `+CMS ERROR:` argument, numeric or verbose; None if unknown."""
    return _lookup(text, CMS_TEXT, _EXTRA_CMS)


def cme_code(text: str) -> int | None:
    """The number behind a `+CME ERROR:` argument, numeric or verbose; None if unknown."""
    return _lookup(text, CME_TEXT, _EXTRA_CME)


def classify_cms(code: int | None) -> SendErrorKind:
    """Whether a `+CMS ERROR` on `AT+CMGS` fails the message or is worth a retry."""
    if code in PERMANENT_CMS:
        return SendErrorKind.PERMANENT
    if code in TEMPORARY_CMS:
        return SendErrorKind.TEMPORARY
    if code is None or code in AMBIGUOUS_CMS:
        return SendErrorKind.AMBIGUOUS
    # Other network causes (below 128, TS 24.011 §8.2.5.4) are about this message;
    # other modem-side codes (300 and up) are about the modem's state right now.
    return SendErrorKind.PERMANENT if code < 128 else SendErrorKind.AMBIGUOUS


def describe_cms(code: int | None) -> str:
    """`+CMS ERROR: 38 (network out of order)` for logs and send results."""
    if code is None:
        return "+CMS ERROR"
    meaning = CMS_TEXT.get(code)
    return f"+CMS ERROR: {code} ({meaning})" if meaning else f"+CMS ERROR: {code}"


def describe_cme(code: int | None) -> str:
    """`+CME ERROR: 14 (SIM busy)` for logs and port state."""
    if code is None:
        return "+CME ERROR"
    meaning = CME_TEXT.get(code)
    return f"+CME ERROR: {code} ({meaning})" if meaning else f"+CME ERROR: {code}"
