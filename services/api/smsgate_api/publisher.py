"""JetStream publishes whose acks are collected later, on one wildcard inbox.

Like `js.publish_async`, but every outcome resolves the future: nats-py's version
raises inside its reply handler on an error reply (a full stream, a KV key that
already exists) and leaves the future pending. Acks are decoded with msgspec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

log = logging.getLogger("smsgate.api.publisher")


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

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._sub: Subscription | None = None
        self._counter = 0

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Ack]:
        """Send one message; the future resolves to its Ack or raises APIError."""
        self._counter += 1
        token = str(self._counter)
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        future.add_done_callback(lambda _: self._pending.pop(token, None))
        await self._nc.publish(subject, payload, reply=f"{self._prefix}.{token}", headers=headers)
        return future

    async def _on_ack(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject[len(self._prefix) + 1 :])
        if future is None or future.done():
            return
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
