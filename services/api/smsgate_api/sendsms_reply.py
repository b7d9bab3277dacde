"""The gateway's `/sendsms` reports: JSON, String and NO, laid out as the hardware does.

Times are the API host's local time (set TZ to choose), `YYYY-MM-DD HH:MM:SS`, as a
gateway prints its own clock. `port` is the gateway port number, or empty while the
message waits for any port in the farm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import msgspec
from smsgate.contracts import MessageState

from smsgate_api.params import ReportFormat
from smsgate_api.sending import RecipientOutcome

# A recipient's `result`: the gateway's three words, and `unknown` (see below).
GatewayResult = Literal["sending", "sent", "fail", "unknown"]

_RESULTS: dict[MessageState, GatewayResult] = {
    MessageState.QUEUED: "sending",
    MessageState.SENDING: "sending",
    MessageState.SENT: "sent",
    MessageState.DELIVERED: "sent",
    MessageState.UNDELIVERED: "sent",  # it left the modem; the handset never got it
    MessageState.FAILED: "fail",
    # It may have reached the network and nobody can tell (SMPP's UNKNOWN): not `fail`,
    # which would invite a resend and a duplicate; a delivery report may settle it later.
    MessageState.UNKNOWN: "unknown",
}

MEDIA_TYPES = {
    ReportFormat.JSON: "application/json",
    ReportFormat.STRING: "text/plain; charset=utf-8",
    ReportFormat.NO: "text/plain; charset=utf-8",
}


class Record(msgspec.Struct):
    """One recipient's line in the report; field order is the gateway's."""

    port: str
    phonenumber: str
    time: str
    id: str
    result: GatewayResult


class Report(msgspec.Struct):
    message: str
    report: dict[str, Record]


class ErrorReport(msgspec.Struct):
    message: str
    report: dict[str, Record]
    error: str


_encoder = msgspec.json.Encoder()


_last_time: tuple[int, str] = (-1, "")


def gateway_time(when: dt.datetime) -> str:
    """`2014-04-29 11:11:11` in the local time of this host."""
    global _last_time
    second = int(when.timestamp())
    if _last_time[0] != second:  # most reports in a busy second share one string
        _last_time = (second, when.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    return _last_time[1]


def gateway_result(state: MessageState) -> GatewayResult:
    return _RESULTS[state]


def record(outcome: RecipientOutcome) -> Record:
    return Record(
        port="" if outcome.port_number is None else str(outcome.port_number),
        phonenumber=outcome.to,
        time=gateway_time(outcome.time),
        id=outcome.id,
        result=_RESULTS[outcome.state],
    )


def render(form: ReportFormat, message: str, outcomes: Sequence[RecipientOutcome]) -> bytes:
    """The report body in the requested format (empty for NO)."""
    if form is ReportFormat.NO:
        return b""
    records = [record(o) for o in outcomes]
    if form is ReportFormat.JSON:
        return _encoder.encode(Report(message, {str(i): r for i, r in enumerate(records)}))
    lines = [f"message:{message}"]
    for number, r in enumerate(records, start=1):
        lines += [
            f"--record {number} start--",
            f"port: {r.port}",
            f"phonenumber: {r.phonenumber}",
            f"time: {r.time}",
            f"id: {r.id}",
            f"result: {r.result}",
            f"--record {number} end--",
        ]
    return ("\n".join(lines) + "\n").encode()


def render_error(form: ReportFormat, message: str, error: str) -> bytes:
    """An error in the requested format: no records, and the reason."""
    if form is ReportFormat.NO:
        return b""
    if form is ReportFormat.JSON:
        return _encoder.encode(ErrorReport(message, {}, error))
    return f"message:{message}\nerror: {error}\n".encode()
