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
appended to the client's outgoing buffer (nats-py's `publish` validates the subject twice
and each header with a regular expression), and a reply is handed on as nats-py parses it
(nats-py queues every message for a task of its subscription: a queue, a task switch and
a coroutine per ack). An agent with status reports publishes about 16 messages per part
through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
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


def _read_reply(msg: Msg, future: asyncio.Future[Any], decode: Callable[[bytes], _R]) -> _R | None:
    """A JetStream reply decoded; None once `future` holds why there is none."""
    if msg.headers and msg.headers.get("Status") == "503":
        future.set_exception(NoStreamResponseError())
        return None
    try:
        return decode(msg.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        future.set_exception(APIError(description=f"unreadable reply: {exc}"))
        return None


def _api_error(error: _Error) -> APIError:
    return APIError(code=error.code, err_code=error.err_code, description=error.description)


def _on_ack_reply(msg: Msg, future: asyncio.Future[Any]) -> None:
    ack = _read_reply(msg, future, _decode_ack)
    if ack is None:
        return
    if ack.error is not None:
        future.set_exception(_api_error(ack.error))
    else:
        future.set_result(ack)


def _on_get_reply(msg: Msg, future: asyncio.Future[Any]) -> None:
    got = _read_reply(msg, future, _decode_got)
    if got is None:
        return
    if got.error is None:
        future.set_result(got.message)
    elif got.error.err_code == _NO_MESSAGE:
        future.set_result(None)
    else:
        future.set_exception(_api_error(got.error))


_Reader = Callable[[Msg, "asyncio.Future[Any]"], None]
_UNSAFE = str.maketrans("", "", "\r\n")
_CLIENT_INTERNALS = ("_send_command", "_flush_pending", "_flush_queue", "is_draining_pubs")


class _Inline(asyncio.Queue[Msg]):
    """A subscription's queue that hands each message on at once, instead of to the task
    nats-py runs per subscription (which then waits on this queue for nothing)."""

    def __init__(self, sub: Subscription, deliver: Callable[[Msg], None]) -> None:
        super().__init__()
        self._sub = sub
        self._deliver = deliver

    def put_nowait(self, item: Msg) -> None:
        self._sub._pending_size -= len(item.data)  # counted by nats-py as it queued it
        try:
            self._deliver(item)
        except Exception:  # never into nats-py's read loop, which would drop the connection
            log.exception("reply on %s not handled", item.subject)


def _header_block(headers: dict[str, str]) -> bytes:
    if len(headers) == 1:  # all but a KV delete on a revision: no generator, no join
        [(key, value)] = headers.items()
        return f"NATS/1.0\r\n{key}: {_safe(value)}\r\n\r\n".encode()
    lines = "".join(f"{key}: {_safe(value)}\r\n" for key, value in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


def _safe(value: str) -> str:
    """A header value that cannot end its line early."""
    return value.translate(_UNSAFE) if "\r" in value or "\n" in value else value


class AckPublisher:
    """Publishes to JetStream and hands back a future for each ack."""

    def __init__(self, nc: Client, *, ack_timeout: float = 5.0) -> None:
        self._nc = nc
        self._ack_timeout = ack_timeout
        self._prefix = ""
        # Insertion order is publish order, so the oldest pending acks come first.
        # Each with what makes its reply an outcome (an ack, or a stored message).
        self._pending: dict[str, tuple[float, asyncio.Future[Any], _Reader]] = {}
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fast = False  # nats-py's internals are there: the shortcuts are taken

    async def start(self) -> None:
        # Kept: on CPython 3.11 each get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._prefix = self._nc.new_inbox()
        self._sub = sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        self.fast = (
            all(hasattr(self._nc, name) for name in _CLIENT_INTERNALS)
            and isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue)
            and isinstance(getattr(sub, "_pending_size", None), int)
        )
        if self.fast:
            sub._pending_queue = _Inline(sub, self._deliver)
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
        return await self._send(subject, payload, headers, _on_ack_reply)

    async def last_message(self, stream: str, subject: str) -> asyncio.Future[StoredMessage | None]:
        """Ask the stream's leader for its last message on `subject`; the future resolves to
        it, to None when there is none, or raises APIError/TimeoutError."""
        request = _encode_request(_LastBySubject(subject))
        return await self._send(f"$JS.API.STREAM.MSG.GET.{stream}", request, None, _on_get_reply)

    async def publish_unacked(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Send one message and ask for no ack: a write that nothing waits for."""
        nc = self._nc
        if self.fast and nc.is_connected and not nc.is_draining_pubs and " " not in subject:
            await self._append(hpub_cmd(subject, "", _header_block(headers), payload))
        else:  # nats-py raises what is wrong (closed, away, a bad subject)
            await nc.publish(subject, payload, headers=headers)

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, reader: _Reader
    ) -> asyncio.Future[Any]:
        self._counter += 1
        token = str(self._counter)
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[token] = (time.monotonic(), future, reader)
        reply = f"{self._prefix}.{token}"
        nc = self._nc
        try:
            if self.fast and nc.is_connected and not nc.is_draining_pubs and " " not in subject:
                if headers:
                    frame = hpub_cmd(subject, reply, _header_block(headers), payload)
                else:
                    frame = pub_cmd(subject, reply, payload)
                await self._append(frame)
            else:  # nats-py raises what is wrong (closed, away, a bad subject)
                await nc.publish(subject, payload, reply=reply, headers=headers)
        except BaseException:
            self._pending.pop(token, None)
            raise
        return future

    async def _append(self, frame: bytes) -> None:
        """A framed message into the client's outgoing buffer; its flusher writes this turn's."""
        nc = self._nc
        await nc._send_command(frame)
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    async def _on_ack(self, msg: Msg) -> None:
        self._deliver(msg)

    def _deliver(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._prefix) + 1 :], None)
        if entry is None or entry[1].done():
            return
        entry[2](msg, entry[1])
