"""JetStream publishes whose acks are collected later, on one wildcard inbox.

Like `js.publish_async`, but every outcome resolves the future: nats-py's version
raises inside its reply handler on an error reply (a full stream, a KV key that
already exists) and leaves the future pending. Acks are decoded with msgspec, and
one sweeper task times out acks that never come, so a publish costs no timer of its own.

The same inbox answers reads of a stream's last message on a subject (a KV key):
`last_message`, the stream leader's answer to `$JS.API.STREAM.MSG.GET` decoded with
msgspec, without the new inbox, JSON and base64 modules and e-mail header parser that
nats-py's `kv.get()` costs per read.

Two shortcuts through nats-py's internals, taken only where the installed nats-py has
them (`AckPublisher.fast`; otherwise its public calls): a publish is framed here and
appended to the client's outgoing buffer, without a coroutine (nats-py's `publish`
validates the subject twice and each header with a regular expression, and awaits three
coroutines deep), and a reply to the inbox is taken from nats-py's parser as it reads
the reply's bytes, before nats-py decodes its subject and headers and builds a `Msg` (and
queues it for a task of its subscription). An agent with status reports publishes about
16 messages per part through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError
from nats.protocol.command import hpub_cmd, pub_cmd

log = logging.getLogger("smsgate.acks")


class _Error(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class Ack(msgspec.Struct):
    """JetStream's answer to a publish: where the message went, or why it did not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _Error | None = None


_decode_ack = msgspec.json.Decoder(Ack).decode


class StoredMessage(msgspec.Struct):
    """A message as the stream keeps it (a KV entry: its value and revision)."""

    subject: str = ""
    seq: int = 0
    hdrs: bytes | None = None  # base64 in the JSON, raw NATS headers here
    data: bytes = b""

    @property
    def kv_removed(self) -> bool:
        """A KV delete or purge marker: the key holds no value."""
        return self.hdrs is not None and b"KV-Operation" in self.hdrs


class _Got(msgspec.Struct):
    message: StoredMessage | None = None
    error: _Error | None = None


_decode_got = msgspec.json.Decoder(_Got).decode
_R = TypeVar("_R")
_NO_MESSAGE = 10037  # JetStream's err_code for "no message found"
_encode_request = msgspec.json.Encoder().encode


class _LastBySubject(msgspec.Struct):
    last_by_subj: str


def _read_reply(
    data: bytes, status: str | None, future: asyncio.Future[Any], decode: Callable[[bytes], _R]
) -> _R | None:
    """A JetStream reply decoded; None once `future` holds why there is none."""
    if status == "503":
        future.set_exception(NoStreamResponseError())
        return None
    try:
        return decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        future.set_exception(APIError(description=f"unreadable reply: {exc}"))
        return None


def _api_error(error: _Error) -> APIError:
    return APIError(code=error.code, err_code=error.err_code, description=error.description)


def _on_ack_reply(data: bytes, status: str | None, future: asyncio.Future[Any]) -> None:
    ack = _read_reply(data, status, future, _decode_ack)
    if ack is None:
        return
    if ack.error is not None:
        future.set_exception(_api_error(ack.error))
    else:
        future.set_result(ack)


def _on_get_reply(data: bytes, status: str | None, future: asyncio.Future[Any]) -> None:
    got = _read_reply(data, status, future, _decode_got)
    if got is None:
        return
    if got.error is None:
        future.set_result(got.message)
    elif got.error.err_code == _NO_MESSAGE:
        future.set_result(None)
    else:
        future.set_exception(_api_error(got.error))


_Reader = Callable[[bytes, str | None, "asyncio.Future[Any]"], None]
_UNSAFE = str.maketrans("", "", "\r\n")
# What the shortcuts use of nats-py's client: its outgoing buffer and flusher, and the
# parser's hand-off of each message it read (`_process_msg(sid, subject, reply, data,
# headers)`, the raw bytes).
_CLIENT_INTERNALS = (
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_flush_queue",
    "_flusher_task",
    "_process_msg",
    "stats",
    "is_draining_pubs",
)
_HandOff = Callable[[int, bytes, bytes, bytes, bytes | None], Awaitable[None]]


def _status(headers: bytes | None) -> str | None:
    """A reply's inline status (`NATS/1.0 503` is "503"), from its raw header block."""
    if headers and headers[8:9] == b" ":
        return headers[9:12].decode(errors="replace")
    return None


class _Replies:
    """The client's hand-off of parsed messages, with one subscription's taken first: its
    raw subject, payload and headers go to `deliver`, and nats-py neither decodes them nor
    builds a `Msg` nor queues it for the subscription's task."""

    def __init__(self, nc: Client, sid: int, deliver: Callable[[bytes, bytes, bytes | None], None]):
        self._nc = nc
        self._sid = sid
        self._deliver = deliver
        self._next: _HandOff = nc._process_msg  # type: ignore[assignment]
        self.active = True
        nc._process_msg = self._process_msg  # type: ignore[method-assign]

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if sid != self._sid or not self.active:
            await self._next(sid, subject, reply, data, headers)
            return
        stats = self._nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            self._deliver(subject, data, headers)
        except Exception:  # never into nats-py's read loop, which would drop the connection
            log.exception("reply on %r not handled", subject)

    def remove(self) -> None:
        """Hand every message on again. Hooks removed are unwound from the outermost in:
        one still wrapped by a live later one stays in place, passing everything on."""
        self.active = False
        nc = self._nc
        while True:
            hook = getattr(vars(nc).get("_process_msg"), "__self__", None)
            if not isinstance(hook, _Replies) or hook.active:
                return
            if getattr(hook._next, "__self__", None) is nc:
                del nc._process_msg  # the client's own again
            else:
                nc._process_msg = hook._next  # type: ignore[method-assign, assignment]


def _header_block(headers: dict[str, str]) -> bytes:
    if len(headers) == 1:  # all but a KV delete on a revision: no generator, no join
        [(key, value)] = headers.items()
        return f"NATS/1.0\r\n{key}: {_safe(value)}\r\n\r\n".encode()
    lines = "".join(f"{key}: {_safe(value)}\r\n" for key, value in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


def _framed(subject: str, reply: str, headers: dict[str, str] | None, payload: bytes) -> bytes:
    """A message as the protocol frames it: HPUB with headers, PUB without."""
    if headers:
        return hpub_cmd(subject, reply, _header_block(headers), payload)
    return pub_cmd(subject, reply, payload)


def _safe(value: str) -> str:
    """A header value that cannot end its line early."""
    return value.translate(_UNSAFE) if "\r" in value or "\n" in value else value


class AckPublisher:
    """Publishes to JetStream and hands back a future for each ack."""

    def __init__(self, nc: Client, *, ack_timeout: float = 5.0) -> None:
        self._nc = nc
        self._ack_timeout = ack_timeout
        self._prefix = ""
        self._cut = 0  # where a reply's subject has its token
        # Insertion order is publish order, so the oldest pending acks come first.
        # Each with what makes its reply an outcome (an ack, or a stored message).
        self._pending: dict[int, tuple[float, asyncio.Future[Any], _Reader]] = {}
        self._sub: Subscription | None = None
        self._replies: _Replies | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fast = False

    @property
    def fast(self) -> bool:
        """Whether the shortcuts are taken (nats-py's internals are there)."""
        return self._fast

    @fast.setter
    def fast(self, value: bool) -> None:
        self._fast = value
        if self._replies is not None:
            self._replies.active = value

    async def start(self) -> None:
        # Kept: on CPython 3.11 each get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._prefix = self._nc.new_inbox()
        self._cut = len(self._prefix) + 1
        self._sub = sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        self.fast = all(hasattr(self._nc, name) for name in _CLIENT_INTERNALS) and isinstance(
            getattr(sub, "_id", None), int
        )
        if self.fast:
            self._replies = _Replies(self._nc, sub._id, self._deliver_raw)
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        interval = min(0.25, self._ack_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self._ack_timeout
            expired = []
            for token, (sent, _, _) in self._pending.items():
                if sent > deadline:
                    break
                expired.append(token)
            for token in expired:
                entry = self._pending.pop(token, None)
                if entry is not None and not entry[1].done():
                    entry[1].set_exception(TimeoutError("no ack from JetStream"))

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._replies is not None:
            self._replies.remove()
            self._replies = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for _, future, _ in self._pending.values():
            future.cancel()
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Ack]:
        """Send one message; the future resolves to its Ack, or raises APIError/TimeoutError."""
        return await self._request(subject, payload, headers, _on_ack_reply)

    def publish_now(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Ack] | None:
        """`publish` without a coroutine, where the shortcut can be taken now; None
        (nothing sent) where it cannot: then `publish` sends it or says why not."""
        return self._send_now(subject, payload, headers, _on_ack_reply)

    async def last_message(self, stream: str, subject: str) -> asyncio.Future[StoredMessage | None]:
        """Ask the stream's leader for its last message on `subject`; the future resolves to
        it, to None when there is none, or raises APIError/TimeoutError."""
        request = _encode_request(_LastBySubject(subject))
        return await self._request(f"$JS.API.STREAM.MSG.GET.{stream}", request, None, _on_get_reply)

    async def publish_unacked(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Send one message and ask for no ack: a write that nothing waits for."""
        if not self.publish_unacked_now(subject, payload, headers):
            # nats-py raises what is wrong (closed, away, a bad subject)
            await self._nc.publish(subject, payload, headers=headers)

    def publish_unacked_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> bool:
        """`publish_unacked` without a coroutine, where the shortcut can be taken now;
        False (nothing sent) where it cannot: then `publish_unacked` says why."""
        frame = _framed(subject, "", headers, payload)
        if not self._can_frame(subject, len(frame)):
            return False
        self._frame(frame)
        return True

    async def _request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reader: _Reader
    ) -> asyncio.Future[Any]:
        """Framed here where the shortcut can be taken now, else through nats-py's publish."""
        sent = self._send_now(subject, payload, headers, reader)
        if sent is not None:
            return sent
        return await self._send(subject, payload, headers, reader)

    def _send_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reader: _Reader
    ) -> asyncio.Future[Any] | None:
        """Framed into the client's buffer here; None where the shortcut cannot be taken."""
        if not self.fast:
            return None
        token = self._counter + 1
        frame = _framed(subject, f"{self._prefix}.{token}", headers, payload)
        if not self._can_frame(subject, len(frame)):
            return None
        future = self._expect(token, reader)
        self._frame(frame)
        return future

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reader: _Reader
    ) -> asyncio.Future[Any]:
        """Through nats-py's public publish, which raises what is wrong (closed, away, a
        bad subject)."""
        token = self._counter + 1
        future = self._expect(token, reader)
        try:
            await self._nc.publish(
                subject, payload, reply=f"{self._prefix}.{token}", headers=headers
            )
        except BaseException:
            self._pending.pop(token, None)
            raise
        return future

    def _expect(self, token: int, reader: _Reader) -> asyncio.Future[Any]:
        """The future of the reply to `token` (the next one: it is taken), read by `reader`."""
        self._counter = token
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[token] = (time.monotonic(), future, reader)
        return future

    def _can_frame(self, subject: str, size: int) -> bool:
        """Whether a frame of `size` bytes may go into the client's buffer from here now:
        connected, its flusher running, room in its buffer, a subject nats-py would take."""
        nc = self._nc
        if not (self.fast and nc.is_connected and not nc.is_draining_pubs):
            return False
        flusher = nc._flusher_task
        if flusher is None or flusher.done() or " " in subject:
            return False
        limit = nc._max_pending_size
        return limit <= 0 or nc._pending_data_size + size <= limit

    def _frame(self, frame: bytes) -> None:
        """A framed message into the client's outgoing buffer; its flusher writes this
        turn's (nats-py's `_send_command` and `_flush_pending`, without their coroutines)."""
        nc = self._nc
        nc._pending.append(frame)
        nc._pending_data_size += len(frame)
        queue = nc._flush_queue
        if queue is not None and queue.empty():
            assert self._loop is not None
            queue.put_nowait(self._loop.create_future())

    async def _on_ack(self, msg: Msg) -> None:
        """A reply as nats-py hands it on (without the shortcut)."""
        self._deliver(msg.subject[self._cut :], msg.data, (msg.headers or {}).get("Status"))

    def _deliver_raw(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        self._deliver(subject[self._cut :], data, _status(headers))

    def _deliver(self, token: str | bytes, data: bytes, status: str | None) -> None:
        try:
            entry = self._pending.pop(int(token), None)
        except ValueError:
            return  # not a reply to anything sent from here
        if entry is None or entry[1].done():
            return
        entry[2](data, status, entry[1])
