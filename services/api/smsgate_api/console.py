"""The web console: the static page at `/`, console sessions, settings and a live stream.

- `GET /` serves the console; its scripts and styles are under `/console/`.
- `GET|POST|DELETE /api/v1/session`: who is logged in (HTTP Basic works too; with
  `?challenge=1` a browser is asked for it); log in (sets the session cookie, see
  session.py); log out.
- `GET /api/v1/settings`: the settings this API process runs with (settings.py).
- `GET /api/v1/console/stream`: Server-Sent Events for the farm view: `health` (NATS,
  queue depth, the event stream's last sequence), `ports` (port states as they change,
  corrected for missed heartbeats) and `traffic` (per-minute counts over the last hour).
  Messages and inbound SMS come from `/api/v1/events`, which the console replays from a
  little before `health.events_seq`.

The stream reads what this process already holds (the port table is a KV watch), so a
console costs no NATS request per tick beyond one shared stream-info refresh a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from smsgate import subjects
from smsgate.contracts import PortState
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from smsgate_api import params, settings
from smsgate_api.auth import User, unauthorized
from smsgate_api.errors import ApiError, bad_parameter
from smsgate_api.port_choice import PortTable
from smsgate_api.runtime import ApiRuntime
from smsgate_api.session import (
    clear_cookie,
    request_session,
    sessions,
    set_cookie,
)
from smsgate_api.traffic import TrafficFollower
from smsgate_api.web import (
    authenticated_user,
    client,
    instrument,
    json_error,
    json_response,
    runtime,
)

STATIC = Path(__file__).parent / "static"
TICK = 1.0  # seconds between looks at the port table
TRAFFIC_EVERY = 3  # ticks between traffic updates
KEEPALIVE = 15.0
_HEALTH_TTL = 1.0
_LOGIN_MAX = 4096  # bytes of a login request body
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# --- the page ------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    page = (STATIC / "index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


async def asset(request: Request) -> Response:
    """A script or style sheet of the console (only the files shipped in static/)."""
    name = request.path_params["name"]
    path = STATIC / name
    media = _MEDIA.get(path.suffix)
    # Only plain names of shipped files: nothing else on disk can be reached.
    if media is None or "/" in name or name.startswith(".") or not path.is_file():
        return Response(b"not found", status_code=404, media_type="text/plain")
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


# --- sessions ------------------------------------------------------------------------------


class SessionInfo(msgspec.Struct, kw_only=True):
    """The logged-in user as the console shows it."""

    user: str
    admin: bool
    ports: list[str]
    via: str  # "session" (cookie) or "header" (Basic or Bearer)
    csrf: str | None = None  # send as X-CSRF-Token with every change (session only)
    expires: int | None = None


class Login(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    username: str
    password: str


def _info(user: User, via: str, csrf: str | None = None, expires: int | None = None) -> SessionInfo:
    return SessionInfo(
        user=user.name,
        admin=user.admin,
        ports=list(user.ports),
        via=via,
        csrf=csrf,
        expires=expires,
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host")


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond `limit` bytes (before reading it all)."""
    length = request.headers.get("content-length", "")
    too_large = ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _login_fields(request: Request) -> Login:
    body = await _body(request, _LOGIN_MAX)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            return msgspec.json.decode(body, type=Login)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise bad_parameter(f"invalid login: {exc}") from None
    fields = params.parse_urlencoded(body)
    return Login(username=fields.get("username", ""), password=fields.get("password", ""))


@instrument("/api/v1/session")
async def session(request: Request) -> Response:
    rt = runtime(request)
    try:
        if request.method == "DELETE":
            response = Response(status_code=204)
            clear_cookie(response, secure=_secure(request))
            return response
        if request.method == "POST":
            return await _log_in(request, rt)
        current = request_session(request, rt)
        if current is not None:
            user = sessions(rt).user(current)
            return json_response(_info(user, "session", current.csrf, current.expires))
        if request.headers.get("authorization") is None:
            if "challenge" in request.query_params:  # the form's "use HTTP Basic" link
                raise unauthorized("log in with HTTP Basic")
            # No WWW-Authenticate: the console shows its own form, not the browser's dialog.
            raise ApiError(401, "unauthorized", "log in to use the console")
        return json_response(_info(await authenticated_user(request), "header"))
    except ApiError as error:
        return json_error(error)


async def _log_in(request: Request, rt: ApiRuntime) -> Response:
    if not _same_origin(request):
        raise ApiError(403, "cross_origin", "log in from the console's own page")
    login = await _login_fields(request)
    try:
        user = await rt.auth.login(client(request), login.username, login.password)
    except ApiError as error:
        if error.status == 401:  # without WWW-Authenticate: a browser would open its dialog
            raise ApiError(401, error.code, error.message) from None
        raise
    cookie, issued = sessions(rt).issue(user.name)
    response = json_response(_info(user, "session", issued.csrf, issued.expires))
    set_cookie(response, cookie, secure=_secure(request))
    return response


# --- the live stream -----------------------------------------------------------------------


class Health(msgspec.Struct, kw_only=True):
    nats: bool
    queue: int | None = None  # jobs waiting in SMS_SEND
    events_seq: int | None = None  # the last sequence in SMS_EVENTS


class PortUpdate(msgspec.Struct, kw_only=True):
    full: bool  # True: `ports` is every port the user may see
    ports: list[PortState]
    removed: list[str]


_encoder = msgspec.json.Encoder()


class Console:
    """What every console stream of one API process shares."""

    def __init__(self, rt: ApiRuntime) -> None:
        self.rt = rt
        self.follower = TrafficFollower()
        self._health = Health(nats=False)
        self._checked = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    async def health(self) -> Health:
        """NATS, queue depth and last event sequence, refreshed at most once a second."""
        if time.monotonic() - self._checked >= _HEALTH_TTL:
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.create_task(self._refresh())
            # Shielded: a stream that goes away must not cancel the others' refresh.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._refreshing)
        return self._health

    async def _refresh(self) -> None:
        rt = self.rt
        events_seq = None
        if rt.js is not None and rt.connected:
            with contextlib.suppress(Exception):
                info = await rt.js.stream_info(subjects.EVENTS_STREAM)
                events_seq = int(info.state.last_seq)
        self._health = Health(
            nats=rt.connected, queue=await rt.queue_depth(), events_seq=events_seq
        )
        self._checked = time.monotonic()


_consoles: weakref.WeakKeyDictionary[ApiRuntime, Console] = weakref.WeakKeyDictionary()


def console_of(rt: ApiRuntime) -> Console:
    found = _consoles.get(rt)
    if found is None:
        found = _consoles[rt] = Console(rt)
    return found


# Per port: (updated, status) as last looked at, and the state's content apart from `updated`.
Seen = dict[str, tuple[tuple[float, str], bytes]]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def port_changes(table: PortTable, user: User, seen: Seen, *, full: bool) -> PortUpdate | None:
    """The ports whose state changed since `seen` (updated in place).

    A heartbeat that changes nothing but `updated` is not sent: with hundreds of ports that
    would be most of the stream. The status is corrected for missed heartbeats here.
    """
    now = time.time()
    current: Seen = {}
    changed: list[PortState] = []
    for name in table.names:
        if not user.may_use(name):
            continue
        state = table.state(name, now)
        if state is None:
            continue
        key = (state.updated.timestamp(), state.status.value)
        held = seen.get(name)
        if held is not None and held[0] == key:
            current[name] = held
            continue
        content = _encoder.encode(msgspec.structs.replace(state, updated=_EPOCH))
        current[name] = (key, content)
        if full or held is None or held[1] != content:
            changed.append(state)
    removed = [name for name in seen if name not in current]
    seen.clear()
    seen.update(current)
    if not (full or changed or removed):
        return None
    return PortUpdate(full=full, ports=changed, removed=removed)


def _event(kind: bytes, data: bytes) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind, data)


async def _live(rt: ApiRuntime, user: User) -> AsyncIterator[bytes]:
    console = console_of(rt)
    console.follower.hold(rt.js)
    try:
        yield b"retry: 2000\n: connected\n\n"
        seen: Seen = {}
        last_health = last_traffic = b""
        quiet = 0.0
        tick = 0
        while True:
            console.follower.attach(rt.js)  # NATS may have come (back) since
            chunks = []
            health = _encoder.encode(await console.health())
            if health != last_health:
                chunks.append(_event(b"health", health))
                last_health = health
            update = port_changes(rt.ports, user, seen, full=tick == 0)
            if update is not None:
                chunks.append(_event(b"ports", _encoder.encode(update)))
            if tick % TRAFFIC_EVERY == 0:
                wanted = None if user.all_ports else rt.ports.known(user)
                traffic = _encoder.encode(console.follower.traffic.series(time.time(), wanted))
                if traffic != last_traffic:
                    chunks.append(_event(b"traffic", traffic))
                    last_traffic = traffic
            if chunks:
                yield b"".join(chunks)
                quiet = 0.0
            elif quiet >= KEEPALIVE:
                yield b": keepalive\n\n"
                quiet = 0.0
            await asyncio.sleep(TICK)
            quiet += TICK
            tick += 1
    finally:
        await console.follower.release()


@instrument("/api/v1/console/stream")
async def live(request: Request) -> Response:
    try:
        user = await authenticated_user(request)
    except ApiError as error:
        return json_error(error)
    return StreamingResponse(
        _live(runtime(request), user),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def routes() -> list[BaseRoute]:
    """The console's routes, to add to the API app."""
    return [
        Route("/", index, methods=["GET"]),
        Route("/console/{name}", asset, methods=["GET"]),
        Route("/api/v1/session", session, methods=["GET", "POST", "DELETE"]),
        Route("/api/v1/settings", settings.settings, methods=["GET"]),
        Route("/api/v1/console/stream", live, methods=["GET"]),
    ]
