"""Waiting for send results: one inbox per request, all behind one wildcard subscription.

A request with `timeout>0` sets `reply_to` on its jobs to `<prefix>.<token>`. The agent
publishes each message's SendResult there (core NATS) once the message is done. Waiters
are registered before the jobs are published, so no result can slip past.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from smsgate import contracts
from smsgate.contracts import SendResult

log = logging.getLogger("smsgate.api.results")


class Waiting:
    """The results one request waits for, keyed by message id."""

    def __init__(self, token: str, reply_to: str, ids: Iterable[str]) -> None:
        self.token = token
        self.reply_to = reply_to
        loop = asyncio.get_running_loop()
        self.futures: dict[str, asyncio.Future[SendResult]] = {
            message_id: loop.create_future() for message_id in ids
        }

    def results(self) -> dict[str, SendResult]:
        return {
            message_id: future.result()
            for message_id, future in self.futures.items()
            if future.done() and not future.cancelled()
        }


class ResultInbox:
    """Routes results arriving on `<prefix>.*` to the requests waiting for them."""

    def __init__(self) -> None:
        self._prefix = ""
        self._waiting: dict[str, Waiting] = {}
        self._sub: Subscription | None = None
        self._counter = 0

    async def start(self, nc: Client) -> None:
        self._prefix = nc.new_inbox()
        self._sub = await nc.subscribe(f"{self._prefix}.*", cb=self._on_result)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for waiting in self._waiting.values():
            for future in waiting.futures.values():
                future.cancel()
        self._waiting.clear()

    def open(self, ids: Iterable[str]) -> Waiting:
        """Register a request's message ids; its jobs get `reply_to=waiting.reply_to`."""
        self._counter += 1
        token = str(self._counter)
        waiting = Waiting(token, f"{self._prefix}.{token}", ids)
        self._waiting[token] = waiting
        return waiting

    def close(self, waiting: Waiting) -> None:
        self._waiting.pop(waiting.token, None)

    async def wait(self, waiting: Waiting, seconds: float) -> dict[str, SendResult]:
        """Results that arrived within `seconds` (all of them, if they did)."""
        pending = [f for f in waiting.futures.values() if not f.done()]
        if pending and seconds > 0:
            await asyncio.wait(pending, timeout=seconds)
        self.close(waiting)
        return waiting.results()

    async def _on_result(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) + 1 :]
        waiting = self._waiting.get(token)
        if waiting is None:
            return  # the request stopped waiting: the result is in the event stream anyway
        try:
            event = contracts.decode_event(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable result on %s: %s", msg.subject, exc)
            return
        if not isinstance(event, SendResult):
            return
        future = waiting.futures.get(event.id)
        if future is not None and not future.done():
            future.set_result(event)
