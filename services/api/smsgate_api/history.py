"""The message history over HTTP: search, one message's timeline, the inbox, exports.

- `GET /api/v1/messages`: newest first, filtered by `direction` (out|in), `number` (either
  side), `port`, `sim` (IMSI), `user`, `state`, `since`/`until` and `q` (text); a page of
  `limit` and a `next` cursor. `format=csv` or `format=jsonl` streams every match instead.
- `GET /api/v1/inbox`: the same, inbound only.
- `GET /api/v1/messages/{id}`: the message's live status (from `sms_messages`) with its
  stored history: the text and the timeline (queued, sending, sent per part with its
  TP-MR, delivered / failed / expired). Either alone is enough to answer.

The API reads the store directly (`[history] url`), so every API replica shares it. A
user sees the messages they sent and the inbound messages of the ports they may use;
an admin sees everything.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import re
import weakref
from collections.abc import AsyncIterator
from typing import Literal

import msgspec
from smsgate.contracts import MessageStatus, PartResult
from smsgate.history import schema, search
from smsgate.history.database import Database, StoreError
from smsgate.history.records import HistoryMessage, TimelineStep
from smsgate.history.search import BadFilter, Filters, Viewer
from smsgate.subjects import port_number
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from smsgate_api import params
from smsgate_api.auth import User
from smsgate_api.errors import ApiError, bad_parameter, unavailable
from smsgate_api.runtime import ApiRuntime
from smsgate_api.web import authenticated_user, instrument, json_error, json_response, runtime

log = logging.getLogger("smsgate.api.history")

EXPORT_BATCH = 1000
EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_RANKS = {"queued": 0, "sending": 1, "sent": 2, "failed": 2, "unknown": 2}
_OFFSET_AS_SPACE = re.compile(r" (\d\d:?\d\d)$")
_DELIVERY = {"delivered": "delivered", "undelivered": "failed", "expired": "expired"}


class MessageDetail(msgspec.Struct, kw_only=True):
    """A message's status (the fields of `sms_messages`) with its history and timeline."""

    v: int = 1
    id: str
    to: str  # the recipient; for an inbound message, the port that received it
    state: str
    port: str | None = None
    agent: str | None = None
    reason: str | None = None
    parts: list[PartResult] = msgspec.field(default_factory=list)
    delivery: str | None = None  # delivered, failed or expired, once the report is in
    caller_id: str | None = None
    user: str = ""
    created: dt.datetime
    updated: dt.datetime
    direction: Literal["out", "in"] = "out"
    sender: str | None = None  # inbound: who sent it
    text: str | None = None
    port_number: int | None = None
    sim: str | None = None
    report_reason: str | None = None
    timeline: list[TimelineStep] = msgspec.field(default_factory=list)


# --- the store, one per API process ---------------------------------------------------------

_stores: weakref.WeakKeyDictionary[ApiRuntime, Database] = weakref.WeakKeyDictionary()
_ready: weakref.WeakSet[Database] = weakref.WeakSet()


async def store(rt: ApiRuntime) -> Database:
    """The history database of this process, its tables created on first use."""
    history = rt.config.history
    if not history.enabled:
        raise ApiError(404, "not_found", "the message history is switched off ([history] enabled)")
    db = _stores.get(rt)
    if db is None:
        try:
            db = _stores[rt] = Database(history.url, size=history.pool, name="api-history")
        except StoreError as exc:
            raise unavailable(str(exc)) from None
    if db not in _ready:
        try:
            await db.run(schema.create)
        except StoreError as exc:
            raise unavailable(f"the history store is not reachable: {exc}") from None
        _ready.add(db)
    return db


async def close(rt: ApiRuntime) -> None:
    db = _stores.pop(rt, None)
    if db is not None:
        await db.close()


# --- query parameters -------------------------------------------------------------------------


def _time(name: str, value: str | None) -> dt.datetime | None:
    if value is None or not value.strip():
        return None
    raw = value.strip()
    try:
        when = dt.datetime.fromtimestamp(float(raw), dt.UTC)
    except ValueError:
        try:
            # A `+` left unencoded in a query arrives as a space: `…:00 02:00` is `…:00+02:00`.
            iso = _OFFSET_AS_SPACE.sub(r"+\1", raw.replace("Z", "+00:00"))
            when = dt.datetime.fromisoformat(iso)
        except ValueError:
            raise bad_parameter(
                f"{name} must be an ISO 8601 time (2026-12-01T12:00:00Z) or Unix seconds, "
                f"not {raw[:40]!r}"
            ) from None
    except (OverflowError, OSError):
        raise bad_parameter(f"{name} is out of range: {raw[:40]!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _list(value: str | None) -> list[str]:
    return params.ports(value) or []


def _ports(rt: ApiRuntime, value: str | None) -> list[str]:
    """Port names as given; a gateway number stands for the known ports that carry it."""
    names: list[str] = []
    for token in _list(value):
        if token.isdigit():
            found = [n for n in rt.ports.names if port_number(n) == int(token)]
            names.extend(found or [token])
        else:
            names.append(token)
    return names


def filters_of(request: Request, *, inbound: bool = False) -> Filters:
    query = request.query_params
    direction = "in" if inbound else query.get("direction") or None
    if direction not in (None, "out", "in"):
        raise bad_parameter(f"direction must be out or in, not {direction!r}")
    return Filters(
        direction=direction,  # type: ignore[arg-type]
        number=query.get("number") or None,
        ports=_ports(runtime(request), query.get("port")),
        sim=query.get("sim") or None,
        user=query.get("user") or None,
        states=_list(query.get("state")),
        since=_time("since", query.get("since")),
        until=_time("until", query.get("until")),
        text=query.get("q") or None,
    )


def viewer_of(user: User) -> Viewer:
    return Viewer(name=user.name, admin=user.admin, ports=user.ports)


def _limit(value: str | None) -> int:
    if value is None or not value.strip():
        return 50
    try:
        return int(value)
    except ValueError:
        raise bad_parameter(f"limit must be a whole number, not {value[:20]!r}") from None


# --- listing and export -----------------------------------------------------------------------


async def _listing(request: Request, *, inbound: bool) -> Response:
    rt = runtime(request)
    try:
        user = await authenticated_user(request)
        filters = filters_of(request, inbound=inbound)
        form = request.query_params.get("format") or "json"
        if form != "json" and form not in EXPORT_FORMATS:
            raise bad_parameter(f"format must be json, csv or jsonl, not {form[:20]!r}")
        db = await store(rt)
        if form != "json":
            return _export(db, filters, viewer_of(user), form, inbound=inbound)
        try:
            found = await search.page(
                db,
                filters,
                viewer_of(user),
                limit=_limit(request.query_params.get("limit")),
                cursor=request.query_params.get("cursor") or None,
            )
        except BadFilter as exc:
            raise bad_parameter(str(exc)) from None
        except StoreError as exc:
            raise unavailable(f"the history store is not reachable: {exc}") from None
    except ApiError as error:
        return json_error(error)
    return json_response(found)


@instrument("/api/v1/messages")
async def list_messages(request: Request) -> Response:
    return await _listing(request, inbound=False)


@instrument("/api/v1/inbox")
async def inbox(request: Request) -> Response:
    return await _listing(request, inbound=True)


CSV_COLUMNS = [f.name for f in msgspec.structs.fields(HistoryMessage)]
_jsonl = msgspec.json.Encoder()


def csv_rows(batch: list[HistoryMessage], *, header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for found in batch:
        row = []
        for name in CSV_COLUMNS:
            value = getattr(found, name)
            if isinstance(value, dt.datetime):
                value = value.isoformat()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            row.append("" if value is None else value)
        writer.writerow(row)
    return out.getvalue().encode()


def jsonl_rows(batch: list[HistoryMessage]) -> bytes:
    buffer = bytearray()
    for found in batch:
        _jsonl.encode_into(found, buffer, len(buffer))
        buffer += b"\n"
    return bytes(buffer)


async def _export_body(
    db: Database, filters: Filters, viewer: Viewer, form: str
) -> AsyncIterator[bytes]:
    if form == "csv":
        yield csv_rows([], header=True)
    batches = search.export(db, filters, viewer, batch=EXPORT_BATCH)
    try:
        async for batch in batches:
            yield csv_rows(batch, header=False) if form == "csv" else jsonl_rows(batch)
    except StoreError as exc:
        # The status line is gone already: the export ends short, and says so in the log.
        log.warning("history export cut short: %s", exc)
    finally:
        with contextlib.suppress(Exception):
            await batches.aclose()


def _export(
    db: Database, filters: Filters, viewer: Viewer, form: str, *, inbound: bool
) -> Response:
    name = "inbox" if inbound else "messages"
    return StreamingResponse(
        _export_body(db, filters, viewer, form),
        media_type=EXPORT_FORMATS[form],
        headers={"Content-Disposition": f'attachment; filename="{name}.{form}"'},
    )


# --- one message ------------------------------------------------------------------------------


def _parts(timeline: list[TimelineStep]) -> list[PartResult]:
    return [
        PartResult(sequence=s.part, reference=s.reference, error=s.reason)
        for s in timeline
        if s.part is not None
    ]


# The schema version, and the text's fingerprint that tells a repeated id with another text.
_NOT_SHOWN = frozenset({"v", "digest"})


def detail(
    status: MessageStatus | None, stored: tuple[HistoryMessage, list[TimelineStep]] | None
) -> MessageDetail:
    """The live status and the stored history of one message, joined (either may be None)."""
    found, timeline = stored if stored is not None else (None, [])
    if found is None:
        assert status is not None
        return MessageDetail(
            **{f: getattr(status, f) for f in status.__struct_fields__ if f not in _NOT_SHOWN}
        )
    inbound = found.direction == "in"
    state = found.state
    if status is not None and _RANKS.get(status.state, 3) >= _RANKS.get(found.state, 3):
        state = status.state  # the live status is as far along, or further
    return MessageDetail(
        id=found.id,
        to=(found.port or "") if inbound else found.number,
        state=state,
        port=status.port if status is not None and status.port else found.port,
        agent=status.agent if status is not None and status.agent else found.agent,
        reason=found.reason if status is None else status.reason or found.reason,
        parts=status.parts if status is not None and status.parts else _parts(timeline),
        delivery=(
            status.delivery
            if status is not None and status.delivery
            else _DELIVERY.get(found.state, found.report)
        ),
        caller_id=found.caller_id,
        user=found.user,
        created=found.created,
        updated=max(found.updated, status.updated) if status is not None else found.updated,
        direction=found.direction,
        sender=found.number if inbound else None,
        text=found.text,
        port_number=found.port_number,
        sim=found.sim,
        report_reason=found.report_reason,
        timeline=timeline,
    )


async def _live_status(rt: ApiRuntime, message_id: str) -> MessageStatus | None:
    if rt.queue is None or not rt.queue.connected:
        return None  # the history alone answers while NATS is away
    return await rt.queue.status(message_id)


@instrument("/api/v1/messages/{id}")
async def get_message(request: Request) -> Response:
    rt = runtime(request)
    try:
        user = await authenticated_user(request)
        message_id = request.path_params["id"]
        stored = None
        trouble: ApiError | None = None
        if rt.config.history.enabled:
            try:
                stored = await search.lookup(await store(rt), message_id, viewer_of(user))
            except StoreError as exc:
                trouble = unavailable(f"the history store is not reachable: {exc}")
            except ApiError as error:
                trouble = error
        status = await _live_status(rt, message_id)
        if status is not None and not (user.admin or status.user == user.name):
            status = None
        if status is None and stored is None:
            if rt.queue is None or not rt.queue.connected:
                raise unavailable("not connected to NATS; try again shortly")
            if trouble is not None and trouble.status >= 500:
                raise trouble
            # Someone else's message is reported as unknown, not as forbidden.
            raise ApiError(404, "not_found", f"no message with id {message_id!r}")
    except ApiError as error:
        return json_error(error)
    return json_response(detail(status, stored))
