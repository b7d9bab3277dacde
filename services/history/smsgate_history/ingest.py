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
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from smsgate.history import schema
from smsgate.history.database import Row, Session
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
    iccid: str | None = None  # the SIM where it has no IMSI
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
    reference: int | None = None  # a report's TP-MR
    part: int | None = None  # the part that decided a report
    records: list[Envelope] | None = None  # a journal batch's `queued` records
    ids: list[str] | None = None  # the messages a `withdrawn` record takes back


_decoder = msgspec.json.Decoder(Envelope)
_json = msgspec.json.Encoder().encode


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
# New events come back: the ones seen before (by id) are left out of the fold.
_INSERT_EVENTS = (
    f"INSERT INTO {schema.EVENTS} (event_id, message_id, at, step, port, detail) "
    "VALUES {values} ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_EVENTS_PER_INSERT = 1000  # 6000 parameters: well inside SQLite's limit
_INSERT_EVENTS_ARRAYS = (
    f"INSERT INTO {schema.EVENTS} (event_id, message_id, at, step, port, detail) "
    "SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[]) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_WITHDRAW = f"DELETE FROM {M} WHERE id = ? AND direction = 'out' AND state_rank = 0"
_UPSERT_PART = (
    f"INSERT INTO {schema.PARTS} (message_id, sequence, reference, error, at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id, sequence) DO UPDATE SET "
    "reference = excluded.reference, error = excluded.error, at = excluded.at"
)


def _detail(values: dict[str, Any]) -> str | None:
    kept = {k: v for k, v in values.items() if v is not None}
    return _json(kept).decode() if kept else None


def apply(session: Session, event: Envelope) -> bool:
    """Fold one event into the tables; False when it was seen before or is not kept."""
    return apply_batch(session, [event]) == 1


def expand(events: Sequence[Envelope]) -> list[Envelope]:
    """The events, each journal batch (`queued_batch`) replaced by the records it holds."""
    if not any(event.type == "queued_batch" for event in events):
        return list(events)
    expanded: list[Envelope] = []
    for event in events:
        if event.type == "queued_batch":
            expanded.extend(event.records or [])
        else:
            expanded.append(event)
    return expanded


def apply_batch(session: Session, events: Sequence[Envelope]) -> int:
    """Fold a batch of events in (one statement per table and kind, not per event); the
    number folded in now, leaving out those seen before and those not kept.

    Journal batches count as the records they hold. A `withdrawn` record comes after the
    records it takes back (the API publishes it once their batch is stored): it removes
    those messages that no port has taken since, after the rest is folded in."""
    events = expand(events)
    rows: dict[str, tuple[Envelope, Row]] = {}
    for event in events:
        row = _event_row(event)
        if row is not None and event.event_id not in rows:
            rows[event.event_id] = (event, row)
    items = list(rows.values())
    fresh = _record_events(session, [row for _, row in items])
    upserts: dict[str, list[Row]] = {}
    parts: list[Row] = []
    for event, row in items:
        if event.event_id not in fresh:
            continue
        statement, params = _message_upsert(event, row[2], session.dialect.greatest)
        upserts.setdefault(statement, []).append(params)
        if event.type == "result" and isinstance(event.parts, list):
            parts.extend((event.id, p.sequence, p.reference, p.error, row[2]) for p in event.parts)
    for statement, params_list in upserts.items():
        session.many(statement, params_list)
    if parts:
        session.many(_UPSERT_PART, parts)
    withdrawn = [(i,) for event in events if event.type == "withdrawn" for i in event.ids or []]
    if withdrawn:
        # Only what is still just `queued`: a message a port took was accepted after all.
        # Its `queued` event stays recorded, so a batch delivered again cannot bring it back.
        session.many(_WITHDRAW, withdrawn)
    return len(fresh)


def _record_events(session: Session, rows: list[Row]) -> set[str]:
    """Insert the events' rows; the ids of those that were not there before."""
    fresh: set[str] = set()
    if session.dialect.name == "postgresql":
        # One statement with six array parameters: psycopg need not parse a statement
        # of thousands of placeholders, nor PostgreSQL plan one.
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else []
        if columns:
            fresh.update(r[0] for r in session.all(_INSERT_EVENTS_ARRAYS, columns))
        return fresh
    for start in range(0, len(rows), _EVENTS_PER_INSERT):
        chunk = rows[start : start + _EVENTS_PER_INSERT]
        values = ", ".join("(?, ?, ?, ?, ?, ?)" for _ in chunk)
        statement = _INSERT_EVENTS.format(values=values)
        fresh.update(r[0] for r in session.all(statement, [v for row in chunk for v in row]))
    return fresh


def _event_row(event: Envelope) -> Row | None:
    """The event's row in the events table; None for what the history does not keep."""
    kind = event.type
    if kind not in RANKS or not event.id:
        return None  # port changes, and reports that name no message
    if kind == "result":
        parts = event.parts if isinstance(event.parts, list) else []
        detail = _detail(
            {
                "status": event.status,
                "reason": event.reason,
                "parts": parts or None,
            }
        )
        step = "result"
    elif kind == "report":
        detail = _detail(
            {
                "reason": event.reason,
                "status_code": event.status_code,
                "reference": event.reference,
                "part": event.part,
            }
        )
        step = _report_state(event)
    elif kind == "inbound":
        detail = _detail({"parts": event.parts, "complete": event.complete})
        step = "received"
    else:
        detail = _detail({"agent": event.agent}) if kind == "sending" else None
        step = kind
    return (event.event_id, event.id, micros(event.time), step, event.port, detail)


def _message_upsert(event: Envelope, at: int, greatest: str) -> tuple[str, Row]:
    if event.type == "inbound":
        return _INSERT_IN, _inbound(event, at)
    return _INSERT_OUT + _on_conflict(event.type, greatest), _outbound(event, at)


def _report_state(event: Envelope) -> str:
    return event.state if isinstance(event.state, str) and event.state else "unknown"


def _inbound(event: Envelope, at: int) -> Row:
    sender = event.sender or ""
    return (
        event.id,
        at,
        at,
        sender,
        number_key(sender),
        event.text,
        event.port,
        event.port_number,
        event.imsi or event.iccid,
        event.parts if isinstance(event.parts, int) else None,
        None if event.smsc_time is None else micros(event.smsc_time),
        event.smsc,
        None if event.complete is None else int(event.complete),
    )


def _outbound(event: Envelope, at: int) -> Row:
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
    return (
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
        event.imsi or event.iccid,
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
    )
