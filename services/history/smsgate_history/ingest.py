"""Folding events into the history tables: pure statements, in any order, each once.

Every event is first recorded under its event id (`INSERT ... ON CONFLICT DO NOTHING`);
only an event recorded now changes its message. The message row is an upsert whose
every column takes the most authoritative value it has seen, so the outcome does not
depend on the order the events arrive in (a report before its result, a result before
its `queued` record after a rebuild):

- state by rank: queued 0 < sending 1 < sent, failed 2 < the report 3;
- the text, user, caller id and accept time from `queued`;
- port, SIM, parts and reason from the result; the port of `sending` until then.

Events are read leniently (`Envelope`): a field this version does not know is ignored,
so new event kinds and report states land as strings.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import msgspec
from smsgate.history import schema
from smsgate.history.database import Session
from smsgate.history.records import micros, number_key

log = logging.getLogger("smsgate.history")

M = schema.MESSAGES
# The report's state as the message's state: a failed report means "undelivered", as in
# the `sms_messages` bucket, so `state=failed` keeps meaning "not sent".
REPORT_STATES = {"delivered": "delivered", "failed": "undelivered", "expired": "expired"}
RANKS = {"queued": 0, "sending": 1, "result": 2, "report": 3, "inbound": 3}


class Part(msgspec.Struct, kw_only=True):
    sequence: int
    reference: int | None = None
    error: str | None = None


class Envelope(msgspec.Struct, kw_only=True):
    """Any event on SMS_EVENTS, read for what the history keeps."""

    type: str
    event_id: str
    time: dt.datetime
    id: str | None = None
    port: str | None = None
    port_number: int | None = None
    imsi: str | None = None
    agent: str | None = None
    to: str | None = None
    sender: str | None = None
    text: str | None = None
    user: str | None = None
    caller_id: str | None = None
    status: str | None = None
    state: Any = None  # a report's state (a string); a port event's is its port state
    reason: str | None = None
    status_code: int | None = None
    status_report: bool | None = None
    smsc_time: dt.datetime | None = None
    smsc: str | None = None
    parts: list[Part] | int | None = None
    complete: bool | None = None


_decoder = msgspec.json.Decoder(Envelope)


def decode(data: bytes) -> Envelope:
    """Raises msgspec.DecodeError / ValidationError for what is not an event at all."""
    return _decoder.decode(data)


def _updated(dialect_greatest: str) -> str:
    return f"updated = {dialect_greatest}({M}.updated, excluded.updated)"


_INSERT_OUT = (
    f"INSERT INTO {M} (id, direction, created, updated, number, number_key, text, user_name, "
    "caller_id, port, port_number, sim, agent, state, state_rank, reason, status_report, "
    "parts, report, report_reason, report_code, report_time, smsc_time) VALUES "
    "(?, 'out', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET "
)


def _on_conflict(kind: str, greatest: str) -> str:
    keep = _updated(greatest)
    if kind == "queued":
        return (
            "created = excluded.created, text = excluded.text, user_name = excluded.user_name, "
            "caller_id = excluded.caller_id, status_report = excluded.status_report, "
            "number = excluded.number, number_key = excluded.number_key, "
            f"port = COALESCE({M}.port, excluded.port), {keep}"
        )
    if kind == "sending":
        early = f"CASE WHEN {M}.state_rank <= 1 THEN excluded.%s ELSE {M}.%s END"
        return (
            ", ".join(f"{c} = {early % (c, c)}" for c in ("port", "port_number", "sim", "agent"))
            + f", state = CASE WHEN {M}.state_rank < 1 THEN excluded.state ELSE {M}.state END"
            + f", state_rank = {greatest}({M}.state_rank, 1), {keep}"
        )
    if kind == "result":
        return (
            "port = excluded.port, port_number = excluded.port_number, "
            f"sim = COALESCE(excluded.sim, {M}.sim), reason = excluded.reason, "
            "parts = excluded.parts, "
            f"state = CASE WHEN {M}.state_rank <= 2 THEN excluded.state ELSE {M}.state END, "
            f"state_rank = {greatest}({M}.state_rank, 2), {keep}"
        )
    # report
    return (
        "report = excluded.report, report_reason = excluded.report_reason, "
        "report_code = excluded.report_code, report_time = excluded.report_time, "
        "smsc_time = excluded.smsc_time, state = excluded.state, state_rank = 3, "
        f"port = COALESCE({M}.port, excluded.port), sim = COALESCE({M}.sim, excluded.sim), "
        f"{keep}"
    )


_INSERT_IN = (
    f"INSERT INTO {M} (id, direction, created, updated, number, number_key, text, user_name, "
    "port, port_number, sim, state, state_rank, parts, smsc_time, smsc, complete) VALUES "
    "(?, 'in', ?, ?, ?, ?, ?, '', ?, ?, ?, 'received', 3, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
_INSERT_EVENT = (
    f"INSERT INTO {schema.EVENTS} (event_id, message_id, at, step, port, detail) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
_UPSERT_PART = (
    f"INSERT INTO {schema.PARTS} (message_id, sequence, reference, error, at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, sequence) DO UPDATE SET "
    "reference = excluded.reference, error = excluded.error, at = excluded.at"
)


def _detail(values: dict[str, Any]) -> str | None:
    kept = {k: v for k, v in values.items() if v is not None}
    return json.dumps(kept, separators=(",", ":")) if kept else None


def apply(session: Session, event: Envelope) -> bool:
    """Fold one event into the tables; False when it was seen before or is not kept."""
    kind = event.type
    if kind not in RANKS or not event.id:
        return False  # port changes, and reports that name no message
    at = micros(event.time)
    if kind == "result":
        parts = event.parts if isinstance(event.parts, list) else []
        detail = _detail(
            {
                "status": event.status,
                "reason": event.reason,
                "parts": [msgspec.structs.asdict(p) for p in parts] or None,
            }
        )
        step = "result"
    elif kind == "report":
        detail = _detail({"reason": event.reason, "status_code": event.status_code})
        step = _report_state(event)
    elif kind == "inbound":
        detail = _detail({"parts": event.parts, "complete": event.complete})
        step = "received"
    else:
        detail = _detail({"agent": event.agent}) if kind == "sending" else None
        step = kind
    recorded = session.execute(
        _INSERT_EVENT, (event.event_id, event.id, at, step, event.port, detail)
    )
    if recorded != 1:
        return False
    if kind == "inbound":
        _inbound(session, event, at)
    else:
        _outbound(session, event, at)
    return True


def _report_state(event: Envelope) -> str:
    return event.state if isinstance(event.state, str) and event.state else "unknown"


def _inbound(session: Session, event: Envelope, at: int) -> None:
    sender = event.sender or ""
    session.execute(
        _INSERT_IN,
        (
            event.id,
            at,
            at,
            sender,
            number_key(sender),
            event.text,
            event.port,
            event.port_number,
            event.imsi,
            event.parts if isinstance(event.parts, int) else None,
            None if event.smsc_time is None else micros(event.smsc_time),
            event.smsc,
            None if event.complete is None else int(event.complete),
        ),
    )


def _outbound(session: Session, event: Envelope, at: int) -> None:
    kind = event.type
    number = event.to or ""
    state = kind
    reason = report = report_reason = None
    report_code = report_time = smsc_time = None
    parts: list[Part] = event.parts if isinstance(event.parts, list) else []
    if kind == "result":
        state = event.status or "failed"
        reason = event.reason
    elif kind == "report":
        report = _report_state(event)
        state = REPORT_STATES.get(report, report)
        report_reason = event.reason or None
        report_code = event.status_code
        report_time = at
        smsc_time = None if event.smsc_time is None else micros(event.smsc_time)
    session.execute(
        _INSERT_OUT + _on_conflict(kind, session.dialect.greatest),
        (
            event.id,
            at,
            at,
            number,
            number_key(number),
            event.text,
            event.user or "",
            event.caller_id,
            event.port,
            event.port_number,
            event.imsi,
            event.agent if kind == "sending" else None,
            state,
            RANKS[kind],
            reason,
            None if event.status_report is None else int(event.status_report),
            len(parts) if kind == "result" else None,
            report,
            report_reason,
            report_code,
            report_time,
            smsc_time,
        ),
    )
    for part in parts:
        session.execute(_UPSERT_PART, (event.id, part.sequence, part.reference, part.error, at))
