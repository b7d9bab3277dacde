"""JetStream publishes whose acks are collected later, on one wildcard inbox.

Like `js.publish_async`, but every outcome resolves the future: nats-py's version
raises inside its reply handler on an error reply (a full stream, a KV key that
already exists) and leaves the future pending. Acks are decoded with msgspec, and
one sweeper task times out acks that never come, so a publish costs no timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

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


class AckPublisher:
    """Publishes to JetStream and hands back a future for each ack."""

    def __init__(self, nc: Client, *, ack_timeout: float = 5.0) -> None:
        self._nc = nc
        self._ack_timeout = ack_timeout
        self._prefix = ""
        # Insertion order is publish order, so the oldest pending acks come first.
        self._pending: dict[str, tuple[float, asyncio.Future[Ack]]] = {}
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        # Kept: on CPython 3.11 each get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        interval = min(0.25, self._ack_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self._ack_timeout
            expired = []
            for token, (sent, _) in self._pending.items():
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
        for _, future in self._pending.values():
            future.cancel()
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Ack]:
        """Send one message; the future resolves to its Ack, or raises APIError/TimeoutError."""
        self._counter += 1
        token = str(self._counter)
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Ack] = loop.create_future()
        self._pending[token] = (time.monotonic(), future)
        try:
            await self._nc.publish(
                subject, payload, reply=f"{self._prefix}.{token}", headers=headers
            )
        except BaseException:
            self._pending.pop(token, None)
            raise
        return future

    async def _on_ack(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._prefix) + 1 :], None)
        if entry is None or entry[1].done():
            return
        future = entry[1]
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            ack = _decode_ack(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            future.set_exception(APIError(description=f"unreadable ack: {exc}"))
            return
        if ack.error is not None:
            error = ack.error
            future.set_exception(
                APIError(code=error.code, err_code=error.err_code, description=error.description)
            )
        else:
            future.set_result(ack)
