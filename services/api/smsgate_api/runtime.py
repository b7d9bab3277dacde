"""The API process's live parts: the NATS connection, port table, result inbox, metrics.

The API starts without NATS if it must: it connects in the background, retrying, and
answers 503 until it is connected and the streams exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue
from smsgate import bus, subjects
from smsgate.acks import AckPublisher
from smsgate.backoff import Backoff
from smsgate.config import Config
from smsgate.contracts import MessageStatus

from smsgate_api.auth import Authenticator
from smsgate_api.errors import unavailable
from smsgate_api.journal import Journal
from smsgate_api.metrics import Metrics
from smsgate_api.port_choice import PortTable
from smsgate_api.queue import JobQueue
from smsgate_api.remembered import remembered
from smsgate_api.results import ResultInbox

log = logging.getLogger("smsgate.api")

_RETRY_MAX = 10.0


class ApiRuntime:
    """Everything the routes share; one per process (or per test)."""

    def __init__(self, config: Config, *, nc: Client | None = None) -> None:
        self.config = config
        api = config.api
        self.auth = Authenticator(
            api.users, max_failures=api.login_max_failures, block=api.login_block
        )
        self.ports = PortTable()
        self.results = ResultInbox()
        self.metrics = Metrics()
        self.nc: Client | None = nc
        self.js: JetStreamContext | None = None
        self.queue: JobQueue | None = None
        self.publisher: AckPublisher | None = None
        self._owns_connection = nc is None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name in self.auth.plain_password_users:
            log.warning(
                "api user %r has a plain-text password in the config; store a hash instead "
                "(scrypt:<salt>:<hash>, see smsgate_api.auth.hash_password)",
                name,
            )
        if self.nc is not None:
            await self._attach(self.nc, provision=False)
        else:
            self._tasks.append(asyncio.create_task(self._connect()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.results.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self._owns_connection and self.nc is not None:
            await bus.close(self.nc)

    async def _connect(self) -> None:
        backoff = Backoff(0.5, _RETRY_MAX)
        while True:
            try:
                nc = await bus.connect(self.config.nats, name=f"{self.config.nats.name}-api")
            except Exception as exc:
                log.warning("cannot reach NATS at %s: %s", self.config.nats.url, exc)
            else:
                try:
                    self.nc = nc
                    await self._attach(nc, provision=True)
                    log.info(
                        "connected to NATS at %s",
                        nc.connected_url.netloc if nc.connected_url else "?",
                    )
                    return
                except Exception as exc:
                    log.warning("NATS connected, but JetStream is not usable: %s", exc)
                    self.queue = None
                    with contextlib.suppress(Exception):
                        await nc.close()
            await backoff.sleep()

    async def _attach(self, nc: Client, *, provision: bool) -> None:
        js = nc.jetstream(timeout=self.config.api.publish_timeout)
        agents: KeyValue | None
        if provision:
            buckets = await bus.provision(js, self.config.nats)
            ports, agents, messages = buckets.ports, buckets.agents, buckets.messages
        else:
            ports = await js.key_value(subjects.PORTS_BUCKET)
            agents = await _bucket_if_there(js, subjects.AGENTS_BUCKET)
            messages = await js.key_value(subjects.MESSAGES_BUCKET)
        await self.results.start(nc)
        self.publisher = AckPublisher(nc, ack_timeout=self.config.api.publish_timeout)
        await self.publisher.start()
        self._tasks.append(asyncio.create_task(self.ports.follow(ports, agents)))
        self.js = js
        history = self.config.history.enabled
        self.queue = JobQueue(
            nc,
            js,
            messages,
            self.publisher,
            journal=Journal(self.publisher) if history else None,
            remembered=self._remembered if history else None,
        )

    async def _remembered(self, ids: Sequence[str]) -> dict[str, MessageStatus]:
        """The caller ids the history store knows (see remembered.py)."""
        # history.py builds on this module: its store is looked up at call time.
        from smsgate_api import history

        return await remembered(await history.store(self), ids)

    @property
    def connected(self) -> bool:
        return self.queue is not None and self.nc is not None and bool(self.nc.is_connected)

    def require_queue(self) -> JobQueue:
        """The job queue, or 503 while NATS is not there."""
        if self.queue is None or not self.queue.connected:
            raise unavailable("not connected to NATS; try again shortly")
        return self.queue

    async def streams_present(self) -> bool:
        """Whether the send and event streams exist (for /readyz)."""
        if self.js is None or not self.connected:
            return False
        try:
            for stream in (subjects.SEND_STREAM, subjects.EVENTS_STREAM):
                await self.js.stream_info(stream)
        except Exception:
            return False
        return True

    async def queue_depth(self) -> int | None:
        if self.js is None or not self.connected:
            return None
        try:
            info = await self.js.stream_info(subjects.SEND_STREAM)
        except Exception:
            return None
        return int(info.state.messages)


async def _bucket_if_there(js: JetStreamContext, name: str) -> KeyValue | None:
    """A bucket that a farm provisioned by an earlier version may not have yet."""
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        log.warning("no KV bucket %s yet: ports are judged by their own states", name)
        return None
