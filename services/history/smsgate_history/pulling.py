"""Events pulled off the history's durable consumer, a window of them always on the way.

nats-py's `fetch(n)` makes a task, a timer and a uuid per message and returns once the
whole batch came, so the store waited for NATS and NATS for the store in turn. Here the
store publishes the JetStream pull requests itself (`$JS.API.CONSUMER.MSG.NEXT`): up to
`window` events are asked for or waiting at any time, they arrive while the database
folds the last batch, and each fold takes whatever came (up to a batch).

The server serves pull requests in the order they came, so each event counts against
the oldest request still open; a status on a request's own reply subject (408 at its
expiry, 409 when the server ends it) closes it, and one whose end never came (the
connection dropped) is dropped after its expiry and a grace. Miscounting only changes
how much is asked for next: every event is acked by itself, after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("smsgate.history")

EXPIRES = 5.0  # seconds a pull request waits on the server for events
GRACE = 1.0  # seconds past its expiry after which a request is over, said so or not


class _PullRequest(msgspec.Struct):
    batch: int
    expires: int  # nanoseconds


_encode = msgspec.json.Encoder().encode


class _Open(msgspec.Struct):
    remaining: int  # events it may still bring
    deadline: float  # monotonic time by which it is over


class Puller:
    """Keeps up to `window` events of one pull consumer asked for or arrived."""

    def __init__(
        self, nc: Client, stream: str, consumer: str, *, window: int, api_prefix: str = "$JS.API"
    ) -> None:
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._window = window
        self._arrived: deque[Msg] = deque()
        self._open: dict[str, _Open] = {}  # oldest first
        self._ready = asyncio.Event()  # an event came (or `wake`)
        self._enough = asyncio.Event()  # `_wanted` events came (or `wake`)
        self._wanted = 0
        self._inbox = ""
        self._counter = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)

    def wake(self) -> None:
        """Make a waiting `take` return now (with what has come, maybe nothing)."""
        self._ready.set()
        self._enough.set()

    async def take(self, most: int, *, wait: float, gather_until: float = 0.0) -> list[Msg]:
        """The events that came, up to `most`; waits up to `wait` seconds for the first,
        then, until the monotonic time `gather_until`, for more (unless `most` came)."""
        await self._ask()
        if not self._arrived:
            await _wait(self._ready, wait)
        gather = gather_until - time.monotonic()
        if self._arrived and len(self._arrived) < most and gather > 0:
            self._wanted = most
            self._enough.clear()
            await _wait(self._enough, gather)
            self._wanted = 0
        arrived = self._arrived
        taken = [arrived.popleft() for _ in range(min(most, len(arrived)))]
        if not arrived:
            self._ready.clear()
        await self._ask()
        return taken

    @property
    def waiting(self) -> int:
        """Events that came and were not taken yet."""
        return len(self._arrived)

    @property
    def asked(self) -> int:
        """Events asked for and not come yet."""
        return sum(request.remaining for request in self._open.values())

    async def _ask(self) -> None:
        now = time.monotonic()
        for token in [t for t, request in self._open.items() if request.deadline <= now]:
            del self._open[token]  # its end never came
        wanted = self._window - len(self._arrived) - self.asked
        # In sizeable requests: half a window at a time, or whatever is missing when none
        # is open (a request each few events would cost the server more than it saves).
        if wanted <= 0 or (self._open and wanted < self._window // 2):
            return
        self._counter += 1
        token = str(self._counter)
        self._open[token] = _Open(remaining=wanted, deadline=now + EXPIRES + GRACE)
        request = _encode(_PullRequest(batch=wanted, expires=int(EXPIRES * 1e9)))
        try:
            await self._nc.publish(self._next, request, reply=f"{self._inbox}.{token}")
        except Exception as exc:
            del self._open[token]
            log.warning("history: asking for events failed: %s", exc)

    async def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None:
            # Only a status ends a request, on its own reply subject; 100 is a heartbeat.
            if status != "100":
                self._open.pop(msg.subject[len(self._inbox) + 1 :], None)
                self._ready.set()  # the taker asks again
            return
        if self._open:
            token = next(iter(self._open))
            request = self._open[token]
            request.remaining -= 1
            if request.remaining <= 0:
                del self._open[token]
        self._arrived.append(msg)
        self._ready.set()
        if self._wanted and len(self._arrived) >= self._wanted:
            self._enough.set()

    async def stop(self) -> None:
        """Stop asking; events that came and were not taken go back at once (not after
        the consumer's ack wait)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        while self._arrived:
            with contextlib.suppress(Exception):
                await self._arrived.popleft().nak()
        self._open.clear()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set, or `seconds` have passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
