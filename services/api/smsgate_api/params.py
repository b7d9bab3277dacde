"""Gateway `/sendsms` parameters: decoding, names without regard to case, validation.

Pure functions: they take the raw query string or form body and return checked values,
or raise an `ApiError` (400) whose message tells the caller what to fix.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from urllib.parse import unquote_to_bytes

import msgspec
from smsgate.pdu import count_segments

from smsgate_api.errors import bad_parameter

# Aliases seen in the gateways' own documentation ("onenumber", the demo's "phonenummer").
_ALIASES = {"onenumber": "phonenumber", "phonenummer": "phonenumber"}
# In these fields a literal '+' is the international prefix, not an encoded space.
_NUMBER_FIELDS = frozenset({"phonenumber", "onenumber", "phonenummer"})

NUMBER_PATTERN = r"^\+?[0-9]{3,20}$"
_NUMBER = re.compile(NUMBER_PATTERN)
# Ids become KV keys and subject tokens: keep them to a safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$"
_ID = re.compile(ID_PATTERN)
MAX_ID_LENGTH = 64
_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})


class ReportFormat(StrEnum):
    JSON = "JSON"
    STRING = "String"
    NO = "NO"


_FORMATS = {f.value.lower(): f for f in ReportFormat}


def _decode(raw: bytes, name: str) -> str:
    try:
        return (unquote_to_bytes(raw) if b"%" in raw else raw).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_parameter(
            f"parameter {name or '?'!r} is not valid UTF-8: percent-encode the text as UTF-8"
        ) from None


def parse_urlencoded(data: bytes, into: dict[str, str] | None = None) -> dict[str, str]:
    """Decode `a=1&B=2` into {lower-case name: value}; the last value of a name wins."""
    fields = {} if into is None else into
    if b"%" not in data and b"+" not in data:
        # Nothing encoded (the common request): decode once, split the text.
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # the per-pair path below names the bad parameter
        else:
            for item in text.split("&"):
                if item:
                    key, _, text_value = item.partition("=")
                    key = key.strip().lower()
                    fields[_ALIASES.get(key, key)] = text_value
            return fields
    for pair in data.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decode(raw_name.replace(b"+", b" "), "").strip().lower()
        if name not in _NUMBER_FIELDS:
            raw_value = raw_value.replace(b"+", b" ")
        fields[_ALIASES.get(name, name)] = _decode(raw_value, name)
    return fields


def report_format(fields: dict[str, str], default: str) -> ReportFormat:
    """`report=JSON|String|NO` in any case; the configured default when absent or empty."""
    value = fields.get("report", "").strip()
    if not value:
        return ReportFormat(default)
    found = _FORMATS.get(value.lower())
    if found is None:
        raise bad_parameter(f"report must be JSON, String or NO, not {value!r}")
    return found


def recipients(value: str | None, limit: int) -> list[str]:
    """The comma-separated `phonenumber` list, each number checked; empty entries skipped."""
    if value is None or not value.strip():
        raise bad_parameter("phonenumber is required: one number or a comma-separated list")
    numbers = [n.strip() for n in value.split(",")]
    numbers = [n for n in numbers if n]
    if len(numbers) > limit:
        raise bad_parameter(f"too many recipients: {len(numbers)}; at most {limit} per request")
    for index, number in enumerate(numbers):
        check_number(number, index)
    return numbers


def check_number(number: str, index: int = 0) -> str:
    if not _NUMBER.match(number):
        raise bad_parameter(
            f"phonenumber {number!r} (recipient {index + 1}) is not a valid number: "
            "use 3 to 20 digits with an optional leading '+'"
        )
    return number


def message_text(value: str | None, max_parts: int) -> str:
    """The message, present and within `max_parts` SMS parts."""
    if value is None:
        raise bad_parameter("message is required")
    if not value:
        raise bad_parameter("message is empty")
    check_length(value, max_parts)
    return value


def check_length(text: str, max_parts: int) -> None:
    # No character costs more than 2 units and no part holds fewer than 66, so short
    # texts are certainly within the limit and skip the per-character count.
    if 2 * len(text) <= 65 * max_parts:
        return
    parts = count_segments(text).parts
    if parts > max_parts:
        raise bad_parameter(
            f"message too long: it needs {parts} SMS parts; at most {max_parts} are allowed"
        )


ANY_PORT = "any"


def ports(value: str | None) -> list[str] | None:
    """`port=lte-3`, `port=3` or `port=2,3` as a list of tokens; None (also `port=any`)
    means any ready port the user may use."""
    if value is None:
        return None
    tokens = [t.strip() for t in value.split(",")]
    tokens = [t for t in tokens if t]
    if any(t.lower() == ANY_PORT for t in tokens):
        if len(tokens) > 1:
            raise bad_parameter("port=any stands alone: it means any ready port")
        return None
    return tokens or None


def timeout(value: str | None, cap: float) -> float:
    """Seconds to wait for send results, capped by config; 0 answers at once."""
    if value is None or not value.strip():
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise bad_parameter(f"timeout must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise bad_parameter(f"timeout must be 0 or more seconds, not {value!r}")
    return min(seconds, cap)


def caller_id(value: str | None) -> str | None:
    """The caller's message id, or None when absent or empty."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_ID_LENGTH or not _ID.match(value):
        raise bad_parameter(
            f"id {value!r} is not usable: up to {MAX_ID_LENGTH} letters, digits, "
            "'-', '_', '=' and inner '.'"
        )
    return value


def flag(value: str | None, name: str, default: bool) -> bool:
    """A yes/no parameter: 1/0, yes/no, true/false, on/off."""
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_parameter(f"{name} must be 1 or 0 (yes/no, true/false), not {value!r}")


class SendParams(msgspec.Struct, frozen=True):
    """A checked `/sendsms` request, minus the credentials."""

    numbers: list[str]
    message: str
    ports: list[str] | None
    timeout: float
    caller_id: str | None
    delivery_report: bool


def send_params(
    fields: dict[str, str], *, max_recipients: int, max_parts: int, max_timeout: float
) -> SendParams:
    """Check every sending parameter of a gateway request."""
    return SendParams(
        numbers=recipients(fields.get("phonenumber"), max_recipients),
        message=message_text(fields.get("message"), max_parts),
        ports=ports(fields.get("port")),
        timeout=timeout(fields.get("timeout"), max_timeout),
        caller_id=caller_id(fields.get("id")),
        delivery_report=flag(fields.get("dr"), "dr", True),
    )
