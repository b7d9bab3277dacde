"""Real HTTP receivers (uvicorn + Starlette on loopback) and event builders for callback tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from smsgate import contracts, subjects
from smsgate.config import CallbackConfig, Config, NatsConfig
from smsgate.embedded import free_port
from smsgate_callback import run_callback
from smsgate_callback.webhook import AttemptRecord
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

IMSI = "460004372167365"
UTC8 = dt.timezone(dt.timedelta(hours=8))


@dataclass
class Hit:
    """One request the receiver got, and the status it answered with."""

    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes
    answered: int = 0

    @property
    def params(self) -> list[tuple[str, str]]:
        """The name=value pairs of the query (GET) or form body (POST), in order."""
        raw = self.query if self.method == "GET" else self.body
        return urllib.parse.parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, strict_parsing=False
        )

    @property
    def event_id(self) -> str:
        return self.headers.get("x-smsgate-event-id", "")


Responder = Callable[[Hit], Awaitable[Response]]


async def answer_ok(hit: Hit) -> Response:
    return PlainTextResponse("OK")


class Receiver:
    """An HTTP server on a random loopback port that records every request."""

    def __init__(
        self, port: int | None = None, respond: Responder = answer_ok, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.respond = respond
        self.hits: list[Hit] = []
        self.release = asyncio.Event()  # wakes handlers parked by `hang`
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/api/http-sms/receive"

    async def _endpoint(self, request: Request) -> Response:
        hit = Hit(
            method=request.method,
            path=request.url.path,
            query=request.scope["query_string"],
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        self.hits.append(hit)
        response = await self.respond(hit)
        hit.answered = response.status_code
        return response

    async def start(self) -> None:
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    async def hang(self, hit: Hit) -> Response:
        """Answer only when released: the client times out first."""
        await self.release.wait()
        return PlainTextResponse("too late", status_code=504)  # the client gave up already

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def ok_ids(self) -> list[str]:
        return [hit.event_id for hit in self.hits if 200 <= hit.answered < 300]


def status(code: int, headers: dict[str, str] | None = None) -> Responder:
    async def respond(hit: Hit) -> Response:
        return PlainTextResponse(f"status {code}", status_code=code, headers=headers)

    return respond


async def until(condition: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    """Wait until `condition()` holds; fail the test naming `what` when the bound runs out."""
    async with asyncio.timeout(limit):
        # Conditions read state the service and receiver record; polling keeps them plain.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert condition(), what


async def consumer_ready(js: JetStreamContext, webhook: str, limit: float = 15.0) -> None:
    """Wait until the service has created `webhook`'s durable consumer."""
    async with asyncio.timeout(limit):
        while True:
            try:
                await js.consumer_info(subjects.EVENTS_STREAM, f"callback-{webhook}")
                return
            except NotFoundError:
                await asyncio.sleep(0.01)


# --- events --------------------------------------------------------------------------------


def result(
    port: str = "lte-1",
    *,
    to: str = "10086",
    caller_id: str | None = "39fd7439",
    status: contracts.SendStatus = contracts.SendStatus.SENT,
    reason: str | None = None,
    time: dt.datetime | None = None,
) -> contracts.SendResult:
    return contracts.SendResult(
        event_id=contracts.new_id(),
        id=caller_id or contracts.new_id(),  # one recipient: the message id is the caller's
        caller_id=caller_id,
        port=port,
        port_number=subjects.port_number(port),
        imsi=IMSI,
        time=time or dt.datetime(2019, 8, 2, 6, 36, 7, tzinfo=dt.UTC),
        to=to,
        status=status,
        reason=reason,
    )


def report(
    port: str = "lte-1",
    *,
    state: contracts.DeliveryState = contracts.DeliveryState.DELIVERED,
    reason: str = "",
    caller_id: str | None = "39fd7439",
) -> contracts.DeliveryReport:
    return contracts.DeliveryReport(
        event_id=contracts.new_id(),
        id=caller_id or contracts.new_id(),  # one recipient: the message id is the caller's
        caller_id=caller_id,
        port=port,
        port_number=subjects.port_number(port),
        imsi=IMSI,
        time=dt.datetime(2019, 8, 2, 6, 36, 9, tzinfo=dt.UTC),
        to="10086",
        state=state,
        reason=reason,
        smsc_time=dt.datetime(2019, 8, 2, 14, 36, 8, tzinfo=UTC8),
    )


def inbound(text: str, port: str = "lte-1", *, sender: str = "10086") -> contracts.InboundSms:
    return contracts.InboundSms(
        event_id=contracts.new_id(),
        id=contracts.new_id(),
        port=port,
        port_number=subjects.port_number(port),
        imsi=IMSI,
        time=dt.datetime(2019, 8, 2, 6, 36, 11, tzinfo=dt.UTC),
        sender=sender,
        text=text,
        smsc_time=dt.datetime(2019, 8, 2, 14, 35, 40, tzinfo=UTC8),
    )


def port_event(port: str = "lte-1", change: str = "registered") -> contracts.PortEvent:
    now = contracts.utcnow()
    state = contracts.PortState(
        port=port,
        agent="host-a",
        device="/dev/ttyUSB2",
        status=contracts.PortStatus.READY,
        imsi=IMSI,
        updated=now,
    )
    return contracts.PortEvent(
        event_id=contracts.new_id(), port=port, imsi=IMSI, time=now, change=change, state=state
    )


_KINDS = {
    contracts.SendResult: "result",
    contracts.DeliveryReport: "report",
    contracts.InboundSms: "inbound",
    contracts.PortEvent: "port",
}


async def publish(js: JetStreamContext, events: Iterable[contracts.Event]) -> list[str]:
    """Publish events on their subjects, in order; returns their event ids."""
    ids = []
    for event in events:
        await js.publish(subjects.event(_KINDS[type(event)], event.port), contracts.encode(event))
        ids.append(event.event_id)
    return ids


# --- the service ---------------------------------------------------------------------------


def callback_config(nats: NatsConfig, **callback: Any) -> Config:
    """A config with small back-off values; `start="all"` so nothing races the consumer."""
    settings: dict[str, Any] = {
        "backoff_initial": 0.05,
        "backoff_max": 0.4,
        "timeout": 2.0,
        "start": "all",
        "time_zone": "+08:00",
    }
    settings.update(callback)
    return Config(nats=nats, callback=msgspec.convert(settings, CallbackConfig))


@dataclass
class Running:
    """A callback service running as a task, and what its workers decided."""

    config: Config
    records: list[AttemptRecord] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            run_callback(self.config, stop=self.stop, on_attempt=self.records.append)
        )

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task

    def acted(self, action: str) -> list[AttemptRecord]:
        return [r for r in self.records if r.action == action]

    def for_event(self, event_id: str) -> list[AttemptRecord]:
        return [r for r in self.records if r.event_id == event_id]


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    """The service as a task for the `async with` body; stopped (gracefully) after it."""
    service = Running(config)
    service.start()
    try:
        yield service
    finally:
        await service.halt()
