"""Folding events into the history tables: pure statements, in any order, each once.

Every event is first recorded under its event id (`INSERT ... ON CONFLICT DO NOTHING`);
only an event recorded now changes its message. The message row is an upsert whose
every column takes the most authoritative value it has seen, so the outcome does not
depend on the order the events arrive in (a report before its result, a result before
its `queued` record after a rebuild):

- state by rank: queued 0 < sending 1 < sent, failed, unknown (the result) 2 < the
  report 3 (a report that comes for an `unknown` message tells what became of it);
- the text, user, caller id and accept time from `queued`;
- port, SIM, parts and reason from the result; the port of `sending` until then.

A message's `queued` and `sending` (50 ms apart at a farm's pace, so nearly always in
one batch) are folded by one upsert (`queued+sending`) instead of two: the row the two
make when both are new, with the clauses of both at once.

Events are read leniently (`Envelope`): a field this version does not know is ignored,
so new event kinds and report states land as strings.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
from smsgate.history import schema, statements
from smsgate.history.database import Dialect, Row, Session
from smsgate.history.records import micros, number_key

log = logging.getLogger("smsgate.history")

M = schema.MESSAGES
# The report's state as the message's state: a failed report means "undelivered", as in
# the `sms_messages` bucket, so `state=failed` keeps meaning "not sent".
REPORT_STATES = {"delivered": "delivered", "failed": "undelivered", "expired": "expired"}
RANKS = {"queued": 0, "sending": 1, "result": 2, "report": 3, "inbound": 3}
QUEUED_SENDING = "queued+sending"  # a message's `queued` and `sending`, in one upsert


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


# The columns each kind of row gives, in the order of its parameters, with their SQL
# types (PostgreSQL's JSON rows need them), and the columns fixed for that direction.
_EVERY_ROW = (
    ("id", "text"),
    ("created", "bigint"),
    ("updated", "bigint"),
    ("number", "text"),
    ("number_key", "text"),
    ("text", "text"),
)
_OUT_COLUMNS = (
    *_EVERY_ROW,
    ("user_name", "text"),
    ("caller_id", "text"),
    ("port", "text"),
    ("port_number", "integer"),
    ("sim", "text"),
    ("agent", "text"),
    ("state", "text"),
    ("state_rank", "integer"),
    ("reason", "text"),
    ("status_report", "integer"),
    ("parts", "integer"),
    ("report", "text"),
    ("report_reason", "text"),
    ("report_code", "integer"),
    ("report_time", "bigint"),
    ("smsc_time", "bigint"),
)
OUT_NAMES = [name for name, _ in _OUT_COLUMNS]  # a sent message's columns, in its rows' order
_UPDATED = OUT_NAMES.index("updated")
_TAKEN = slice(OUT_NAMES.index("port"), OUT_NAMES.index("state_rank") + 1)  # from `sending`
_IN_COLUMNS = (
    *_EVERY_ROW,
    ("port", "text"),
    ("port_number", "integer"),
    ("sim", "text"),
    ("parts", "integer"),
    ("smsc_time", "bigint"),
    ("smsc", "text"),
    ("complete", "integer"),
)
_OUT_FIXED = {"direction": "'out'"}
_IN_FIXED = {"direction": "'in'", "user_name": "''", "state": "'received'", "state_rank": "3"}
_PART_COLUMNS = (
    ("message_id", "text"),
    ("sequence", "integer"),
    ("reference", "integer"),
    ("error", "text"),
    ("at", "bigint"),
)


Nulls = tuple[bool, ...]  # per value of a row: None, written as NULL in the statement
NO_NULLS: Nulls = ()


def _insert(
    table: str,
    columns: Sequence[tuple[str, str]],
    fixed: dict[str, str],
    arrays: bool,
    nulls: Nulls = NO_NULLS,
) -> str:
    """`INSERT INTO table (...)` from one row of `?`s (a NULL for each value `nulls` marks),
    or (`arrays`, PostgreSQL) from one parameter holding all the rows as a JSON array of
    arrays (`as_json`): a whole batch in one statement, planned once, its parameter
    encoded by msgspec (psycopg dumps arrays element by element in Python)."""
    names = ", ".join([name for name, _ in columns] + list(fixed))
    constants = "".join(f", {value}" for value in fixed.values())
    if not arrays:
        marks = ", ".join(_marks(len(columns), nulls))
        return f"INSERT INTO {table} ({names}) VALUES ({marks}{constants})"
    fields = ", ".join(f"(r->>{i})::{kind}" for i, (_, kind) in enumerate(columns))
    return (
        f"INSERT INTO {table} ({names}) "
        f"SELECT {fields}{constants} FROM jsonb_array_elements(?::jsonb) AS r"
    )


def _marks(count: int, nulls: Nulls) -> list[str]:
    return ["NULL" if nulls and nulls[i] else "?" for i in range(count)]


def runs_by_nulls(rows: Sequence[Row]) -> Iterator[tuple[Nulls, list[Row]]]:
    """The rows in their order, in runs that have None in the same places, each row
    without its Nones (the statement writes them as NULL).

    CPython's sqlite3 looks for an adapter for every None it binds (about 0.4 µs each,
    an AttributeError made and dropped), and a `queued` row is half Nones: binding them
    was a third of the history's cost per message in `smsgate dev`."""
    nulls: list[bool] = []
    run: list[Row] = []
    pick: Callable[[Row], Row] = tuple
    for row in rows:
        found = [value is None for value in row]
        if found != nulls:
            if run:
                yield tuple(nulls), run
            nulls, run, pick = found, [], _picker(tuple(found))
        run.append(pick(row))
    if run:
        yield tuple(nulls), run


@functools.lru_cache(maxsize=256)
def _picker(nulls: Nulls) -> Callable[[Row], Row]:
    """What picks a row's values that are not None, as a tuple (C speed)."""
    kept = [i for i, null in enumerate(nulls) if not null]
    if not kept:
        return lambda _: ()
    if len(kept) == 1:
        return lambda row: (row[kept[0]],)
    return operator.itemgetter(*kept)


def as_json(rows: Sequence[Row]) -> str:
    """Rows as the one parameter of an `arrays` insert."""
    return _json(rows).decode()


def _on_conflict(kind: str, greatest: str) -> str:
    keep = _updated(greatest)
    if kind == "inbound":
        return "ON CONFLICT (id) DO NOTHING"
    accepted = (
        "created = excluded.created, text = excluded.text, user_name = excluded.user_name, "
        "caller_id = excluded.caller_id, status_report = excluded.status_report, "
        "number = excluded.number, number_key = excluded.number_key"
    )
    early = f"CASE WHEN {M}.state_rank <= 1 THEN excluded.%s ELSE {M}.%s END"
    taken = (
        ", ".join(f"{c} = {early % (c, c)}" for c in ("port_number", "sim", "agent"))
        + f", state = CASE WHEN {M}.state_rank < 1 THEN excluded.state ELSE {M}.state END"
        + f", state_rank = {greatest}({M}.state_rank, 1)"
    )
    if kind == "queued":
        sets = f"{accepted}, port = COALESCE({M}.port, excluded.port), {keep}"
    elif kind == "sending":
        sets = f"port = {early % ('port', 'port')}, {taken}, {keep}"
    elif kind == QUEUED_SENDING:
        # `queued` then `sending`, or the other way round: the same. Past sending, the
        # port stays the one a result or report set (every event names its port).
        port = f"CASE WHEN {M}.state_rank <= 1 THEN excluded.port "
        port += f"ELSE COALESCE({M}.port, excluded.port) END"
        sets = f"{accepted}, port = {port}, {taken}, {keep}"
    elif kind == "result":
        sets = (
            "port = excluded.port, port_number = excluded.port_number, "
            f"sim = COALESCE(excluded.sim, {M}.sim), reason = excluded.reason, "
            "parts = excluded.parts, "
            f"state = CASE WHEN {M}.state_rank <= 2 THEN excluded.state ELSE {M}.state END, "
            f"state_rank = {greatest}({M}.state_rank, 2), {keep}"
        )
    else:  # report
        sets = (
            "report = excluded.report, report_reason = excluded.report_reason, "
            "report_code = excluded.report_code, report_time = excluded.report_time, "
            "smsc_time = excluded.smsc_time, state = excluded.state, state_rank = 3, "
            f"port = COALESCE({M}.port, excluded.port), sim = COALESCE({M}.sim, excluded.sim), "
            f"{keep}"
        )
    return f"ON CONFLICT (id) DO UPDATE SET {sets}"


@functools.lru_cache(maxsize=256)
def _upsert(kind: str, dialect: Dialect, nulls: Nulls = NO_NULLS) -> str:
    """The statement that folds rows of one kind of event into the messages."""
    arrays = dialect.name == "postgresql"
    if kind == "inbound":
        head = _insert(M, _IN_COLUMNS, _IN_FIXED, arrays, nulls)
    else:
        head = _insert(M, _OUT_COLUMNS, _OUT_FIXED, arrays, nulls)
    return f"{head} {_on_conflict(kind, dialect.greatest)}"


@functools.lru_cache(maxsize=64)
def _upsert_parts(dialect: Dialect, nulls: Nulls = NO_NULLS) -> str:
    head = _insert(schema.PARTS, _PART_COLUMNS, {}, dialect.name == "postgresql", nulls)
    return (
        f"{head} ON CONFLICT (message_id, sequence) DO UPDATE SET "
        "reference = excluded.reference, error = excluded.error, at = excluded.at"
    )


# New events come back: the ones seen before (by id) are left out of the fold.
_INSERT_EVENTS = (
    f"INSERT INTO {schema.EVENTS} (event_id, message_id, at, step, port, detail) "
    "VALUES {values} ON CONFLICT (message_id, event_id) DO NOTHING RETURNING event_id"
)
# The numbers of rows an insert of events is written for (smsgate.history.statements), up
# to 256 (1,536 parameters: well inside SQLite's limit).
INSERT_SIZES = statements.sizes_up_to(256)
_EVENT_COLUMNS = (
    ("event_id", "text"),
    ("message_id", "text"),
    ("at", "bigint"),
    ("step", "text"),
    ("port", "text"),
    ("detail", "text"),
)
_INSERT_EVENTS_ARRAYS = (
    _insert(schema.EVENTS, _EVENT_COLUMNS, {}, arrays=True)
    + " ON CONFLICT (message_id, event_id) DO NOTHING RETURNING event_id"
)
_WITHDRAW = f"DELETE FROM {M} WHERE id = ? AND direction = 'out' AND state_rank = 0"


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
    new = [(event, row[2]) for event, row in items if event.event_id in fresh]
    # `queued+sending` first: a message's later `sending` (another port, after a retry)
    # must come after it, as in the stream.
    upserts: dict[str, list[Row]] = {QUEUED_SENDING: []}
    parts: list[Row] = []
    for kind, event, at, other in _paired(new):
        if kind == QUEUED_SENDING:
            assert other is not None
            upserts.setdefault(kind, []).append(_queued_sending(event, at, *other))
            continue
        upserts.setdefault(kind, []).append(
            _inbound(event, at) if kind == "inbound" else _outbound(event, at)
        )
        if kind == "result" and isinstance(event.parts, list):
            parts.extend((event.id, p.sequence, p.reference, p.error, at) for p in event.parts)
    dialect = session.dialect
    for kind, kind_rows in upserts.items():
        if kind_rows:
            upsert = functools.partial(_upsert, kind, dialect)
            _write(session, upsert, kind_rows, key=lambda r: r[0])
    if parts:
        _write(session, functools.partial(_upsert_parts, dialect), parts, key=_part_key)
    withdrawn = [(i,) for event in events if event.type == "withdrawn" for i in event.ids or []]
    if withdrawn:
        # Only what is still just `queued`: a message a port took was accepted after all.
        # Its `queued` event stays recorded, so a batch delivered again cannot bring it back.
        session.many(_WITHDRAW, withdrawn)
    return len(fresh)


Timed = tuple[Envelope, int]  # an event and its time in microseconds


def _paired(new: list[Timed]) -> Iterator[tuple[str, Envelope, int, Timed | None]]:
    """The new events with the kind of upsert that folds each: a message's first `queued`
    and first `sending` of the batch go as one `queued+sending` (the `sending` as its last
    item, and not again on its own)."""
    first_queued: dict[str, Envelope] = {}
    first_sending: dict[str, Timed] = {}
    for event, at in new:
        if event.type == "queued":
            first_queued.setdefault(event.id or "", event)
        elif event.type == "sending":
            first_sending.setdefault(event.id or "", (event, at))
    taken = {id(found[0]) for mid, found in first_sending.items() if mid in first_queued}
    for event, at in new:
        mid = event.id or ""
        if event.type == "queued" and first_queued[mid] is event and mid in first_sending:
            yield QUEUED_SENDING, event, at, first_sending[mid]
        elif id(event) not in taken:
            yield event.type, event, at, None


def _part_key(row: Row) -> Any:
    return row[0], row[1]


def _write(
    session: Session,
    statement: Callable[[Nulls], str],
    rows: list[Row],
    key: Callable[[Row], Any],
) -> None:
    """Run an upsert (`statement(nulls)`) for every row, in their order: on SQLite in runs
    of rows with None in the same places, on PostgreSQL one statement per round of rows
    with distinct keys (one statement may not update a row twice)."""
    if session.dialect.name != "postgresql":
        for nulls, run in runs_by_nulls(rows):
            session.many(statement(nulls), run)
        return
    rounds: list[list[Row]] = []
    seen: dict[Any, int] = {}
    for row in rows:
        index = seen.get(key(row), 0)
        seen[key(row)] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(row)
    for batch in rounds:
        session.execute(statement(NO_NULLS), (as_json(batch),))


def _record_events(session: Session, rows: list[Row]) -> set[str]:
    """Insert the events' rows; the ids of those that were not there before."""
    fresh: set[str] = set()
    if session.dialect.name == "postgresql":
        # One statement with one parameter: psycopg need not parse a statement of
        # thousands of placeholders, nor PostgreSQL plan one.
        if rows:
            fresh.update(r[0] for r in session.all(_INSERT_EVENTS_ARRAYS, (as_json(rows),)))
        return fresh
    for start in range(0, len(rows), INSERT_SIZES[-1]):
        # The last row repeated is a conflict: it inserts and returns nothing.
        chunk = statements.padded(rows[start : start + INSERT_SIZES[-1]], INSERT_SIZES)
        statement = _INSERT_EVENTS.format(values=", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk)))
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


def _queued_sending(queued: Envelope, queued_at: int, sending: Envelope, sending_at: int) -> Row:
    """The row a message's `queued` and then its `sending` make: the record's fields, the
    port and SIM that took it, state `sending`."""
    row = list(_outbound(queued, queued_at))
    taken = _outbound(sending, sending_at)
    row[_UPDATED] = max(queued_at, sending_at)
    row[_TAKEN] = taken[_TAKEN]
    return tuple(row)
