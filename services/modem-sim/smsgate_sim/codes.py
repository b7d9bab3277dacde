"""Final result codes `+CME ERROR` (27.007 9.2) and `+CMS ERROR` (27.005 3.2.5), with texts."""

from __future__ import annotations

CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    50: "Incorrect parameters",
    100: "unknown",
}

CMS_ERRORS: dict[int, str] = {
    1: "Unassigned (unallocated) number",
    8: "Operator determined barring",
    10: "Call barred",
    21: "Short message transfer rejected",
    27: "Destination out of service",
    28: "Unidentified subscriber",
    29: "Facility rejected",
    30: "Unknown subscriber",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Congestion",
    47: "Resources unavailable, unspecified",
    50: "Requested facility not subscribed",
    69: "Requested facility not implemented",
    81: "Invalid short message transfer reference value",
    95: "Invalid message, unspecified",
    96: "Invalid mandatory information",
    97: "Message type non-existent or not implemented",
    98: "Message not compatible with short message protocol state",
    99: "Information element non-existent or not implemented",
    111: "Protocol error, unspecified",
    127: "Interworking, unspecified",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
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
}

# Names the code paths use, so a reader sees the meaning rather than a number.
CME_NOT_ALLOWED = 3
CME_SIM_PIN_REQUIRED = 11
CME_SIM_BUSY = 14
CME_INCORRECT_PASSWORD = 16
CME_NO_NETWORK = 30
CME_INCORRECT_PARAMETERS = 50
CMS_NOT_ALLOWED = 302
CMS_NOT_SUPPORTED = 303
CMS_INVALID_PDU = 304
CMS_INVALID_TEXT = 305
CMS_SIM_PIN_REQUIRED = 311
CMS_SIM_BUSY = 314
CMS_INVALID_INDEX = 321
CMS_MEMORY_FULL = 322
CMS_NO_NETWORK = 331
CMS_UNKNOWN = 500
