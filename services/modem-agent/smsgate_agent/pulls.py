"""One JetStream pull request out at a time, published by the agent itself.

nats-py's `fetch(n)` returns only once the whole batch came (a task per message on the
way): the agent publishes the pull request (`CONSUMER.MSG.NEXT`) on its own inbox and
takes each job as it arrives. A request ends when all its jobs came, or when the server
ends it (a 408 at expiry, a 409 when it cannot keep it, on the request's own reply
subject), or, said so or not, a grace period past its expiry (the connection dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("smsgate.agent")

GRACE = 1.0  # seconds past its expiry after which a request is over, said so or not
HEARTBEAT_STATUS = "100"


class _PullRequest(msgspec.Struct):
    batch: int
    expires: int  # nanoseconds


_encode = msgspec.json.Encoder().encode


class PullRequests:
    """Asks a consumer for jobs, one request out at a time, and hands each job on.

    `on_job` gets every job; `on_status` every status that ended our request (code and
    description), after the request is over; `wake` is set whenever a request is over,
    so the owner's loop may ask again.
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        on_job: Callable[[Msg], Awaitable[None]],
        *,
        expires: float,
        wake: asyncio.Event,
        on_status: Callable[[str, str], None] = lambda code, description: None,
        api_prefix: str = "$JS.API",
    ) -> None:
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._on_job = on_job
        self._on_status = on_status
        self._expires = expires
        self.wake = wake
        self._inbox = ""
        self._sub: Subscription | None = None
        self._counter = 0
        self._token: str | None = None  # the request out now, if any
        self._remaining = 0  # jobs it may still bring
        self.deadline = 0.0  # monotonic time by which it is over

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    @property
    def out(self) -> bool:
        """Whether a request is out (one whose end never came is over at its deadline)."""
        if self._token is not None and time.monotonic() >= self.deadline:
            self._token = None
        return self._token is not None

    async def ask(self, batch: int) -> None:
        self._counter += 1
        token = str(self._counter)
        self._token, self._remaining = token, batch
        self.deadline = time.monotonic() + self._expires + GRACE
        request = _encode(_PullRequest(batch=batch, expires=int(self._expires * 1e9)))
        try:
            await self._nc.publish(self._next, request, reply=f"{self._inbox}.{token}")
        except Exception as exc:
            self._token = None
            log.warning("asking %s for work failed: %s", self._next, exc)
            await asyncio.sleep(1.0)

    def _over(self) -> None:
        self._token = None
        self.wake.set()

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None:
            # Only a status ends a request, on its own reply subject; 100 is a heartbeat.
            if status != HEARTBEAT_STATUS and msg.subject == f"{self._inbox}.{self._token}":
                self._over()
                self._on_status(status, (msg.headers or {}).get("Description", ""))
            return
        if self._token is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self._over()
        await self._on_job(msg)
