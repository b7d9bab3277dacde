"""The HTTP/1.1 connection that answers `GET|POST /sendsms` itself, without ASGI.

Integrations send their whole traffic to `/sendsms`. Through uvicorn and ASGI each such
request cost a scope, a request-response cycle, a task through the middleware stack and
two writes; here a request is read straight off the connection (`parse_head`), answered
by the same `gateway.reply` as the ASGI endpoint, and written with one `transport.write`
laid out as uvicorn lays out its responses (`tests/integration/test_gateway_protocol.py`
compares the bytes).

Anything else on the connection (another path or method, a chunked or `Expect` request, a
head over 64 KiB, a body over the cap, anything odd) is handed with every byte not yet
answered to uvicorn's own httptools protocol, which serves the rest of the connection
through the ASGI app: the lean path never decides what uvicorn would have refused.
Requests on one connection are answered one at a time and in order (pipelining); the
access log, metrics, proxy headers, keep-alive timeout and graceful shutdown work as
uvicorn's do.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
import weakref
from typing import Any, ClassVar, NamedTuple, cast

from uvicorn.config import Config as ServerConfig
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from smsgate_api import gateway, sendsms_reply
from smsgate_api.access_log import AccessLog
from smsgate_api.body import MAX_BODY
from smsgate_api.errors import ApiError
from smsgate_api.params import ReportFormat
from smsgate_api.runtime import ApiRuntime

log = logging.getLogger("smsgate.api")

MAX_HEAD = 64 * 1024  # a longer head goes to uvicorn, as it did before this path
# Unanswered bytes a client may pipeline before reading stops until it reads its answers.
_MAX_BUFFERED = 256 * 1024

# What a plain head is made of: printable ASCII, tabs and CRLF line ends. Anything else
# (a control character, a bare CR or LF, a byte over 0x7f) goes to uvicorn to judge.
_HEAD_BYTES = bytes([9, 10, 13, *range(0x20, 0x7F)])
_HANDED_OVER_HEADERS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
# The header lines of a plain head, after its request line: each a name without spaces,
# tabs or colons, a colon and any value (its bytes and line ends are checked before).
_FIELD_LINES = re.compile(rb"(?:\r\n[^ \t:\r\n]+:[^\r\n]*)*")
# A line whose name `parse_head` reads or hands over (searched in the lowered lines): most
# heads have none, and then their lines need no look one by one.
_READ_FIELD = re.compile(
    rb"\r\n(?:content-length|content-type|authorization|connection|x-forwarded-for"
    rb"|transfer-encoding|expect|upgrade):"
)
_CONTENT_TYPE_LINES = {
    form: b"content-type: " + media.encode() + b"\r\n"
    for form, media in sendsms_reply.MEDIA_TYPES.items()
}
_INTERNAL_ERROR = b"internal error"


class Head(NamedTuple):
    """What `/sendsms` needs from a request's head."""

    method: str
    query: bytes
    http_version: str
    keep_alive: bool
    size: int  # bytes of the head, its blank line included
    content_length: int
    content_type: str | None
    authorization: str | None
    forwarded_for: list[bytes]


class Verdict(enum.Enum):
    INCOMPLETE = "the head is not all in yet"
    OTHER = "not a request for this path: uvicorn's"


def parse_head(data: bytes | bytearray) -> Head | Verdict:
    """The head of the request at the start of `data`, if it is a plain `/sendsms` one."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return Verdict.OTHER if len(data) > MAX_HEAD else Verdict.INCOMPLETE
    if end > MAX_HEAD:
        return Verdict.OTHER
    head = bytes(data[:end])
    if head.translate(None, _HEAD_BYTES):
        return Verdict.OTHER
    line_ends = head.count(b"\r\n")
    if head.count(b"\r") != line_ends or head.count(b"\n") != line_ends:
        return Verdict.OTHER
    line_end = head.find(b"\r\n")
    if line_end < 0:
        line_end = len(head)
    request_line = head[:line_end].split(b" ")
    if len(request_line) != 3:
        return Verdict.OTHER
    method, target, version = request_line
    if method != b"GET" and method != b"POST":
        return Verdict.OTHER
    if version == b"HTTP/1.1":
        keep_alive = True
    elif version == b"HTTP/1.0":
        keep_alive = False  # as uvicorn: an HTTP/1.0 connection closes after its answer
    else:
        return Verdict.OTHER
    path, _, query = target.partition(b"?")
    if path != b"/sendsms" or b"#" in query:
        return Verdict.OTHER
    fields = head[line_end:]
    if not _FIELD_LINES.fullmatch(fields):
        return Verdict.OTHER
    content_length = -1
    content_type = authorization = None
    forwarded_for: list[bytes] = []
    lines = fields.split(b"\r\n")[1:] if _READ_FIELD.search(fields.lower()) else ()
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if content_length >= 0 or not value.isdigit():
                return Verdict.OTHER
            content_length = int(value)
            if content_length > MAX_BODY:
                return Verdict.OTHER  # uvicorn and the endpoint refuse it (413) as before
        elif name == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"connection":
            tokens = [token.strip() for token in value.lower().split(b",")]
            if b"upgrade" in tokens:
                return Verdict.OTHER
            if b"close" in tokens:
                keep_alive = False
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name in _HANDED_OVER_HEADERS:
            return Verdict.OTHER
    return Head(
        method.decode(),
        query,
        "1.1" if version == b"HTTP/1.1" else "1.0",
        keep_alive,
        end + 4,
        max(content_length, 0),
        content_type,
        authorization,
        forwarded_for,
    )


class Outbox:
    """The answers finished in one turn of an event loop, written together at its end.

    One NATS read resumes many requests (it carries many acks), and each request makes its
    answer between the others' Python work. Written one by one as they were made, every
    answer woke the client's reader anew, and on a machine with few cores the woken reader
    preempted the server in the middle of its turn: about one context switch per request.
    Written back to back at the end of the turn, the client is woken once for the lot
    (bench/RESULTS.md, issue 21 section 1: context switches per request 1.0 -> 0.74).
    The writes keep the order in which the answers were made; a connection never has two
    answers here (its next request starts after this turn).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._answers: list[tuple[asyncio.Transport, bytes]] = []

    def add(self, transport: asyncio.Transport, answer: bytes) -> None:
        if not self._answers:
            self._loop.call_soon(self.flush)
        self._answers.append((transport, answer))

    def flush(self) -> None:
        """Write every answer waiting here now (at the end of the turn, or before a close)."""
        answers, self._answers = self._answers, []
        for transport, answer in answers:
            if transport.is_closing():
                continue  # the client went away meanwhile
            try:
                transport.write(answer)
            except Exception:  # one broken connection must not cost the others their answers
                log.exception("could not write an answer")


_OUTBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = (
    weakref.WeakKeyDictionary()
)


def outbox_of(loop: asyncio.AbstractEventLoop) -> Outbox:
    """The loop's outbox (one per loop: a protocol class may serve in several loops' threads)."""
    outbox = _OUTBOXES.get(loop)
    if outbox is None:
        outbox = _OUTBOXES[loop] = Outbox(loop)
    return outbox


class GatewayProtocol(asyncio.Protocol):
    """One client connection; `protocol_for(app)` makes the class uvicorn is given."""

    runtime: ClassVar[ApiRuntime]
    access_log: ClassVar[AccessLog | None] = None
    _defaults: ClassVar[list[tuple[bytes, bytes]] | None] = None
    _default_lines: ClassVar[bytes] = b""
    _trusted: ClassVar[Any] = None  # uvicorn's trusted hosts (a private class of its own)

    def __init__(
        self,
        config: ServerConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self._outbox = outbox_of(self.loop)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        if self._trusted is None:  # uvicorn's reading of `forwarded_allow_ips`, made once
            middleware = ProxyHeadersMiddleware(None, config.forwarded_allow_ips)  # type: ignore[arg-type]
            type(self)._trusted = middleware.trusted_hosts
        self._buffer = bytearray()
        self._busy = False  # a request is being answered
        self._closing = False  # answer what is in flight, then close
        self._reading_paused = False
        self._writing_paused = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_answer = 0.0

    # --- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.client = get_remote_addr(transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._closing = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def data_received(self, data: bytes) -> None:
        if self._busy:
            self._buffer += data
            if len(self._buffer) > _MAX_BUFFERED:
                self._pause_reading()
        elif self._buffer:
            self._buffer += data
            self._next()
        else:  # the usual case: one whole request, read from `data` itself
            self._next(data)

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        # The client reads its answers slower than it sends requests: stop reading them.
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._busy:
            self._resume_reading()

    def shutdown(self) -> None:
        """The server is stopping (uvicorn calls this): close once the answer in flight is out."""
        self._closing = True
        if not self._busy and self.transport is not None:
            self._outbox.flush()  # an answer made this turn goes out before the close
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    # --- requests ------------------------------------------------------------------------

    def _next(self, data: bytes | None = None) -> None:
        """Answer the request at the start of `data` or the buffer, once it is all in."""
        buffer = self._buffer if data is None else data
        if not buffer or self._closing:
            return
        head = parse_head(buffer)
        if head is Verdict.INCOMPLETE:
            if data is not None:
                self._buffer += data
            return
        if head is Verdict.OTHER:
            if data is not None:
                self._buffer += data
            self._hand_over()
            return
        assert isinstance(head, Head)
        end = head.size + head.content_length
        if len(buffer) < end:
            if data is not None:
                self._buffer += data
            return
        body = bytes(buffer[head.size : end]) if head.content_length else b""
        if data is None:
            del self._buffer[:end]
        elif len(data) > end:  # pipelined: the rest waits for this answer
            self._buffer += data[end:]
        self._busy = True
        client = self.client
        if head.forwarded_for and self.config.proxy_headers:
            client = self._forwarded_client(head.forwarded_for)
        task = self.loop.create_task(self._answer(head, body, client))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _forwarded_client(self, values: list[bytes]) -> tuple[str, int] | None:
        """The client a trusted proxy names in `X-Forwarded-For` (as uvicorn reads it)."""
        client = self.client
        if client is not None and client[0] in self._trusted:
            host, port = self._trusted.get_trusted_client_address(
                b", ".join(values).decode("latin-1")
            )
            if host:
                return host, port
        return client

    async def _answer(self, head: Head, body: bytes, client: tuple[str, int] | None) -> None:
        rt = self.runtime
        started = time.perf_counter()
        status = 500
        try:
            try:
                fields = gateway.request_fields(head.query, head.method, head.content_type, body)
            except ApiError as error:
                status, form, content, extra = gateway.refusal(rt, error)
            else:
                where = client[0] if client else "unknown"
                status, form, content, extra = await gateway.reply(
                    rt, fields, head.authorization, where
                )
            # The server stopping meanwhile ends the connection with this answer, and says so.
            keep_alive = head.keep_alive and not self._closing
            response, keep_alive = self._response(status, form, content, extra, keep_alive)
        except Exception:
            log.exception("unexpected error in /sendsms")
            status = 500
            response, keep_alive = self._response(
                500, ReportFormat.STRING, _INTERNAL_ERROR, {}, head.keep_alive and not self._closing
            )
        finally:
            rt.metrics.request(gateway.ROUTE, status, time.perf_counter() - started)
        access = self.access_log
        if access is not None:
            access.note_request(
                client, head.method, gateway.ROUTE, head.query, head.http_version, status
            )
        self._send(response, keep_alive=keep_alive)

    def _response(
        self,
        status: int,
        form: ReportFormat,
        content: bytes,
        extra: dict[str, str],
        keep_alive: bool,
    ) -> tuple[bytes, bool]:
        """The answer laid out as uvicorn writes what `gateway.serve` sends; whether the
        connection stays open after it."""
        defaults = self.server_state.default_headers
        if defaults is not GatewayProtocol._defaults:  # the date, new once a second
            GatewayProtocol._defaults = defaults
            GatewayProtocol._default_lines = b"".join(
                name + b": " + value + b"\r\n" for name, value in defaults
            )
        lines = [
            STATUS_LINE[status],
            GatewayProtocol._default_lines,
            b"content-length: %d\r\n" % len(content),
            _CONTENT_TYPE_LINES[form],
        ]
        closes = False
        for name, value in extra.items():
            key = name.lower().encode("latin-1")
            raw = value.encode("latin-1")
            if key == b"connection" and b"close" in [
                token.lower().strip() for token in raw.split(b",")
            ]:
                closes = True
            lines.append(key + b": " + raw + b"\r\n")
        if not keep_alive and not closes:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        lines.append(content)
        return b"".join(lines), keep_alive and not closes

    def _send(self, response: bytes, *, keep_alive: bool) -> None:
        transport = self.transport
        self._busy = False
        self.server_state.total_requests += 1
        if transport is None or transport.is_closing():
            return
        if not keep_alive or self._closing:
            self._closing = True
            self._outbox.flush()
            transport.write(response)
            transport.close()
            return
        self._outbox.add(transport, response)
        self._last_answer = self.loop.time()
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(
                self.config.timeout_keep_alive, self._close_if_idle
            )
        if self._buffer:
            self._next()
        if not self._writing_paused and len(self._buffer) <= _MAX_BUFFERED:
            self._resume_reading()

    def _close_if_idle(self) -> None:
        # One timer per idle stretch rather than one per answer: each answer notes its time.
        self._idle_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        idle = self.loop.time() - self._last_answer
        timeout = self.config.timeout_keep_alive
        if self._busy or self._buffer or idle < timeout:
            self._idle_timer = self.loop.call_later(max(timeout - idle, 0.05), self._close_if_idle)
            return
        self._outbox.flush()
        transport.close()

    def _hand_over(self) -> None:
        """Give the connection, and every byte not yet answered, to uvicorn's protocol."""
        transport = self.transport
        assert transport is not None
        # uvicorn may answer at once (a malformed request): after what was answered here.
        self._outbox.flush()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.server_state.connections.discard(self)
        protocol = HttpToolsProtocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self._resume_reading()
        data, self._buffer = bytes(self._buffer), bytearray()
        self._busy = True  # nothing more for this object to do
        protocol.data_received(data)


def protocol_for(runtime: ApiRuntime, access_log: AccessLog | None) -> type[GatewayProtocol]:
    """The protocol class to give uvicorn (`http=`) for an app with this runtime and log."""
    return type(
        "AppGatewayProtocol",
        (GatewayProtocol,),
        {"runtime": runtime, "access_log": access_log},
    )
