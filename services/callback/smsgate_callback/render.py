"""Events to callback content: gateway fields, their URL encoding, and the JSON body.

Pure functions. The gateway form reproduces what hardware gateways send:

    result   type=SMS-Status-Result  status=Sent|Failed|Unknown  time=YYYY-MM-DD HH:MM:SS
             (time_zone); `Unknown` is ours: no gateway reports it (see DEFAULT_STATUS_TEXT)
    report   type=SMS-Status-Report  status=Message received on handset | ...
             time=YYYY/MM/DD HH:MM:SS, the SMSC discharge time
    inbound  type= (empty)           message=<whole text>  time=YYYY/MM/DD HH:MM:SS, the SCTS
    port     type=Port-Status        status=<change>       (not sent by hardware gateways)

SMSC times are printed in the SMSC's own zone, the wall clock a modem shows (`+CMGL`),
because the SCTS carries its own offset and gateways print it unconverted.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from smsgate import contracts, subjects
from smsgate.config import CallbackConfig, CallbackParams

RESULT_TYPE = "SMS-Status-Result"
REPORT_TYPE = "SMS-Status-Report"
INBOUND_TYPE = ""
PORT_TYPE = "Port-Status"

DEFAULT_STATUS_TEXT: Mapping[str, str] = {
    "sent": "Sent",
    "failed": "Failed",
    # The send's outcome is unknown (it may have reached the network). Hardware gateways
    # know only Sent and Failed; a receiver that takes anything but `Sent` for a failure
    # behaves as it did before, and one that looks can tell it must not simply resend.
    "unknown": "Unknown",
    "delivered": "Message received on handset",
    "undelivered": "Message delivery failed",
    "expired": "Message validity period expired",
    "unmatched": "Delivery report not matched",
}

Fields = list[tuple[str, str]]
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def resolve_zone(name: str) -> dt.tzinfo | None:
    """A `time_zone` setting as a tzinfo; None means this host's local zone."""
    if name.lower() == "local":
        return None
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    match = _OFFSET.match(name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        offset = dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return dt.timezone(sign * offset)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use local, UTC, +08:00 or an IANA name"
        ) from None


@dataclass(frozen=True, slots=True)
class GatewayStyle:
    """How gateway and form callbacks name and print each field."""

    params: CallbackParams = field(default_factory=CallbackParams)
    extra: tuple[tuple[str, str], ...] = ()
    status_text: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_TEXT))
    zone: dt.tzinfo | None = None
    result_time_format: str = "%Y-%m-%d %H:%M:%S"
    smsc_time_format: str = "%Y/%m/%d %H:%M:%S"

    @classmethod
    def from_config(
        cls,
        callback: CallbackConfig,
        *,
        params: CallbackParams | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> GatewayStyle:
        """The style of one webhook: its own names and extras, the rest from [callback]."""
        unknown = sorted(set(callback.status_text) - set(DEFAULT_STATUS_TEXT))
        if unknown:
            raise ValueError(
                f"callback.status_text: unknown keys {unknown}; "
                f"expected {sorted(DEFAULT_STATUS_TEXT)}"
            )
        names = params or callback.params
        fixed = dict(callback.extra if extra is None else extra)
        taken = sorted(set(fixed) & (_field_names(names) | {"type", "id"}))
        if taken:
            raise ValueError(f"extra fields {taken} clash with the callback's own fields")
        return cls(
            params=names,
            extra=tuple(fixed.items()),
            status_text={**DEFAULT_STATUS_TEXT, **callback.status_text},
            zone=resolve_zone(callback.time_zone),
            result_time_format=callback.result_time_format,
            smsc_time_format=callback.smsc_time_format,
        )

    def local_time(self, when: dt.datetime, time_format: str | None = None) -> str:
        """An event time (UTC on the bus) in the configured zone, by default as a result's."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone(self.zone).strftime(time_format or self.result_time_format)

    def smsc_time(self, when: dt.datetime) -> str:
        """An SMSC timestamp in the SMSC's own zone, as the modem shows it."""
        return when.strftime(self.smsc_time_format)


def _field_names(params: CallbackParams) -> set[str]:
    return {getattr(params, name) for name in params.__struct_fields__} - {""}


def _port_number(event: contracts.Event) -> str:
    number = event.port_number
    if number is None:
        number = subjects.port_number(event.port)
    return "" if number is None else str(number)


def gateway_fields(event: contracts.Event, style: GatewayStyle) -> Fields:
    """The name=value pairs of a gateway GET (or form POST), in a gateway's order."""
    names = style.params
    number = message = status = ""
    message_id = reason = None
    # `id` is the recipient's own message id: the caller's `id` for one recipient,
    # `<id>-<i>` for recipient i of several, so every callback names one message.
    if isinstance(event, contracts.SendResult):
        kind, number, message_id = RESULT_TYPE, event.to, event.id
        status = style.status_text[event.status.value]
        time, reason = style.local_time(event.time), event.reason or ""
    elif isinstance(event, contracts.DeliveryReport):
        kind, number, message_id = REPORT_TYPE, event.to, event.id
        state = "undelivered" if event.state is contracts.DeliveryState.FAILED else event.state
        status = style.status_text[state]
        if event.smsc_time is not None:
            time = style.smsc_time(event.smsc_time)
        else:
            time = style.local_time(event.time, style.smsc_time_format)
        reason = _report_reason(event)
    elif isinstance(event, contracts.InboundSms):
        kind, number, message = INBOUND_TYPE, event.sender, event.text
        time = style.smsc_time(event.smsc_time)
    else:
        kind, status, time = PORT_TYPE, event.change, style.local_time(event.time)
    pairs: Sequence[tuple[str, str | None]] = (
        (names.phonenumber, number),
        (names.port, _port_number(event)),
        (names.portname, event.port),
        ("id", message_id or ""),
        (names.message, message),
        (names.time, time),
        ("type", kind),
        (names.imsi, event.imsi or ""),
        (names.status, status),
        (names.reason, reason),
    )
    # An empty name leaves a field out; `reason` exists only for results and reports.
    fields: Fields = [(name, value) for name, value in pairs if name and value is not None]
    fields.extend(style.extra)
    return fields


def _report_reason(report: contracts.DeliveryReport) -> str:
    """Empty for `delivered`; an unmatched report names what it carried, since its `id`
    is the report's own and no caller's id can tell the receiver what it was about."""
    if report.state is contracts.DeliveryState.DELIVERED:
        return ""
    if report.state is not contracts.DeliveryState.UNMATCHED:
        return report.reason
    said = f"TP-MR {report.reference}" if report.reference is not None else "no TP-MR"
    return f"{said}, status {report.status_code}: {report.reason}" if report.reason else said


def encode_fields(fields: Fields) -> str:
    """`name=value&...` with every byte outside A-Z a-z 0-9 -._~ percent-encoded from UTF-8.

    A space is `%20` (never `+`), so `+`, `&` and any script survive every decoder.
    """
    return "&".join(f"{_quote(name)}={_quote(value)}" for name, value in fields)


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def _quote(text: str) -> str:
    # Most values (ids, numbers, port names, empty ones) need no escape; quote() is the
    # slow path, several times the cost of this match.
    if _UNRESERVED.fullmatch(text):
        return text
    return urllib.parse.quote(text, safe="")


def json_body(event: contracts.Event) -> bytes:
    """The JSON POST body: the event Struct itself, `type` tag and `event_id` included."""
    return contracts.encode(event)
