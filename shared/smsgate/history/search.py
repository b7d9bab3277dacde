"""Reading the history: filters, who may see what, cursor pages, timelines, exports."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import msgspec

from smsgate.contracts import OUTCOME_UNKNOWN
from smsgate.history import schema
from smsgate.history.database import Database, Row, Session
from smsgate.history.records import (
    Direction,
    HistoryMessage,
    MessagePage,
    TimelineStep,
    from_micros,
    micros,
    number_key,
)

MAX_PAGE = 1000
COLUMNS = (
    "id, direction, number, text, state, created, updated, user_name, caller_id, port, "
    "port_number, sim, agent, reason, status_report, parts, report, report_reason, "
    "report_code, report_time, smsc_time, smsc, complete"
)


class BadFilter(ValueError):
    """A filter or cursor that cannot be used; the message says which and why."""


class Filters(msgspec.Struct, kw_only=True, frozen=True):
    direction: Direction | None = None
    number: str | None = None  # either side: the recipient (out) or the sender (in)
    ports: Sequence[str] = ()
    sim: str | None = None
    user: str | None = None
    states: Sequence[str] = ()
    since: dt.datetime | None = None  # created at or after
    until: dt.datetime | None = None  # created before
    text: str | None = None  # a substring of the text (case-insensitive for ASCII)


class Viewer(msgspec.Struct, kw_only=True, frozen=True):
    """Who is asking: an admin sees everything; a user sees the messages they sent and
    the inbound messages of the ports they may use (`ports` patterns, `*` for all)."""

    name: str
    admin: bool = False
    ports: Sequence[str] = ("*",)


def encode_cursor(created: int, message_id: str) -> str:
    raw = json.dumps([created, message_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, message_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise BadFilter(f"cursor {cursor[:40]!r} is not one this API gave out") from None
    if not isinstance(created, int) or not isinstance(message_id, str):
        raise BadFilter(f"cursor {cursor[:40]!r} is not one this API gave out")
    return created, message_id


def _like(value: str) -> str:
    """A literal for LIKE ... ESCAPE '\\'."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _port_pattern(pattern: str) -> str:
    """A user's port pattern (`lte-*`) as a LIKE pattern."""
    return _like(pattern).replace("*", "%").replace("?", "_")


def where(filters: Filters, viewer: Viewer, dialect_name: str) -> tuple[str, list[Any]]:
    """The WHERE clause (without the word) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if not viewer.admin:
        inbound = "direction = 'in'"
        if "*" not in viewer.ports:
            if viewer.ports:
                likes = " OR ".join("port LIKE ? ESCAPE '\\'" for _ in viewer.ports)
                inbound = f"(direction = 'in' AND ({likes}))"
                params_inbound = [_port_pattern(p) for p in viewer.ports]
            else:
                inbound, params_inbound = "1 = 0", []
        else:
            params_inbound = []
        clauses.append(f"((direction = 'out' AND user_name = ?) OR {inbound})")
        params.extend([viewer.name, *params_inbound])
    if filters.direction is not None:
        clauses.append("direction = ?")
        params.append(filters.direction)
    if filters.number:
        clauses.append("number_key = ?")
        params.append(number_key(filters.number))
    if filters.ports:
        clauses.append(f"port IN ({', '.join('?' for _ in filters.ports)})")
        params.extend(filters.ports)
    if filters.sim:
        clauses.append("sim = ?")
        params.append(filters.sim)
    if filters.user is not None:
        clauses.append("user_name = ?")
        params.append(filters.user)
    if filters.states:
        clauses.append(f"state IN ({', '.join('?' for _ in filters.states)})")
        params.extend(filters.states)
    if filters.since is not None:
        clauses.append("created >= ?")
        params.append(micros(filters.since))
    if filters.until is not None:
        clauses.append("created < ?")
        params.append(micros(filters.until))
    if filters.text:
        operator = "ILIKE" if dialect_name == "postgresql" else "LIKE"
        clauses.append(f"text {operator} ? ESCAPE '\\'")
        params.append(f"%{_like(filters.text)}%")
    return " AND ".join(clauses) or "1 = 1", params


def message(row: Row) -> HistoryMessage:
    (
        message_id,
        direction,
        number,
        text,
        state,
        created,
        updated,
        user,
        caller_id,
        port,
        port_number,
        sim,
        agent,
        reason,
        status_report,
        parts,
        report,
        report_reason,
        report_code,
        report_time,
        smsc_time,
        smsc,
        complete,
    ) = row
    return HistoryMessage(
        id=message_id,
        direction=direction,
        number=number,
        text=text,
        state=state,
        created=from_micros(created),
        updated=from_micros(updated),
        user=user,
        caller_id=caller_id,
        port=port,
        port_number=port_number,
        sim=sim,
        agent=agent,
        reason=reason,
        status_report=None if status_report is None else bool(status_report),
        parts=parts,
        report=report,
        report_reason=report_reason,
        report_code=report_code,
        report_time=None if report_time is None else from_micros(report_time),
        smsc_time=None if smsc_time is None else from_micros(smsc_time),
        smsc=smsc,
        complete=None if complete is None else bool(complete),
    )


def _select(
    filters: Filters, viewer: Viewer, dialect: str, cursor: str | None
) -> tuple[str, list[Any]]:
    clause, params = where(filters, viewer, dialect)
    if cursor is not None:
        created, message_id = decode_cursor(cursor)
        clause += " AND (created < ? OR (created = ? AND id < ?))"
        params.extend([created, created, message_id])
    return f"SELECT {COLUMNS} FROM {schema.MESSAGES} WHERE {clause}", params


async def page(
    db: Database,
    filters: Filters,
    viewer: Viewer,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> MessagePage:
    """One page, newest first; `next` continues with older messages."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadFilter(f"limit must be 1 to {MAX_PAGE}, not {limit}")
    statement, params = _select(filters, viewer, db.dialect.name, cursor)
    statement += " ORDER BY created DESC, id DESC LIMIT ?"
    params.append(limit + 1)
    rows = await db.run(lambda s: s.all(statement, params))
    more = len(rows) > limit
    rows = rows[:limit]
    found = [message(row) for row in rows]
    following = encode_cursor(rows[-1][5], rows[-1][0]) if more else None
    return MessagePage(messages=found, next=following)


async def export(
    db: Database, filters: Filters, viewer: Viewer, *, batch: int = 1000
) -> AsyncGenerator[list[HistoryMessage], None]:
    """Every matching message, newest first, in batches read as they are consumed."""
    statement, params = _select(filters, viewer, db.dialect.name, None)
    statement += " ORDER BY created DESC, id DESC"
    async for rows in db.rows(statement, params, batch=batch):
        yield [message(row) for row in rows]


def visible(found: HistoryMessage, viewer: Viewer) -> bool:
    """Whether `viewer` may see this one message (the same rule as `where`)."""
    if viewer.admin:
        return True
    if found.direction == "out":
        return found.user == viewer.name
    if "*" in viewer.ports:
        return True
    return any(fnmatch.fnmatchcase(found.port or "", p) for p in viewer.ports)


def _part_step(error: str | None) -> str:
    """A part's step: sent, failed, or unknown (its PDU was written, no answer came)."""
    if not error:
        return "sent"
    return "unknown" if error.startswith(OUTCOME_UNKNOWN) else "failed"


def timeline_steps(rows: Sequence[Row]) -> list[TimelineStep]:
    """The stored events of one message, in time order, as timeline steps."""
    steps: list[TimelineStep] = []
    for at, step, port, detail in rows:
        when = from_micros(at)
        data: dict[str, Any] = json.loads(detail) if detail else {}
        if step == "result":
            for part in data.get("parts", []):
                steps.append(
                    TimelineStep(
                        time=when,
                        step=_part_step(part.get("error")),
                        port=port,
                        part=part.get("sequence"),
                        reference=part.get("reference"),
                        reason=part.get("error"),
                    )
                )
            if data.get("status") != "sent" or not data.get("parts"):
                steps.append(
                    TimelineStep(
                        time=when,
                        step=str(data.get("status", "failed")),
                        port=port,
                        reason=data.get("reason"),
                    )
                )
            continue
        steps.append(
            TimelineStep(
                time=when,
                step=step,
                port=port,
                part=data.get("part"),
                reference=data.get("reference"),
                reason=data.get("reason") or None,
                status_code=data.get("status_code"),
            )
        )
    return steps


def _one(session: Session, message_id: str) -> tuple[Row | None, list[Row]]:
    found = session.one(f"SELECT {COLUMNS} FROM {schema.MESSAGES} WHERE id = ?", (message_id,))
    if found is None:
        return None, []
    events = session.all(
        f"SELECT at, step, port, detail FROM {schema.EVENTS} WHERE message_id = ? "
        "ORDER BY at, event_id",
        (message_id,),
    )
    return found, events


# Ids asked for in one statement: SQLite before 3.32 allows 999 parameters.
IDS_PER_QUERY = 500


def _many(session: Session, ids: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        rows += session.all(
            f"SELECT {COLUMNS} FROM {schema.MESSAGES} WHERE id IN ({marks})", tuple(chunk)
        )
    return rows


async def messages(db: Database, ids: Sequence[str]) -> dict[str, HistoryMessage]:
    """The stored messages among `ids`, by id, in one query per IDS_PER_QUERY ids; an
    unknown id is left out. No viewer: the caller decides what the asker may see."""
    unique = list(dict.fromkeys(ids))
    rows = await db.run(lambda s: _many(s, unique)) if unique else []
    return {record.id: record for record in map(message, rows)}


async def lookup(
    db: Database, message_id: str, viewer: Viewer
) -> tuple[HistoryMessage, list[TimelineStep]] | None:
    """One message and its timeline; None when unknown or not the viewer's to see."""
    found, events = await db.run(lambda s: _one(s, message_id))
    if found is None:
        return None
    record = message(found)
    if not visible(record, viewer):
        return None
    return record, timeline_steps(events)
