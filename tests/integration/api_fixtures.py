"""Fixtures for the API tests: users, an in-process app, ports in the KV, an agent stand-in.

The stand-in plays only the agent's reply side: it pulls jobs from SMS_SEND, and for each
publishes the SendResult to `reply_to` and to `sms.event.result.<port>`, and stores the
final status in `sms_messages`, as the real agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import uvicorn
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig
from smsgate import contracts, subjects
from smsgate.config import ApiConfig, ApiUser, Config, HistoryConfig, NatsConfig
from smsgate.contracts import (
    MessageStatus,
    PartResult,
    PortState,
    PortStatus,
    SendJob,
    SendResult,
    SendStatus,
)
from smsgate.embedded import free_port
from smsgate_api import create_app, hash_password
from smsgate_api.app import server_config
from smsgate_api.runtime import ApiRuntime
from starlette.applications import Starlette

from tests.conftest import Bus

PASSWORD = "smspwd"
HASHED = hash_password(PASSWORD)  # once per session: scrypt is deliberately slow
TOKEN = "tok-smsuser"
LIMITED_TOKEN = "tok-limited"
ADMIN_TOKEN = "tok-admin"

USERS = [
    ApiUser(name="smsuser", password=HASHED, token=TOKEN),
    ApiUser(name="limited", password="limitedpw", ports=["lte-1", "lte-2"], token=LIMITED_TOKEN),
    ApiUser(name="nodr", password="nodrpw", delivery_report=False),
    ApiUser(name="admin", password="adminpw", token=ADMIN_TOKEN, admin=True),
]


# Not the default (.smsgate/ in the working directory): a store no test writes to.
_EMPTY_HISTORY = HistoryConfig(url=f"sqlite:///{tempfile.mkdtemp(prefix='smsgate-api-')}/h.db")


def api_config(nats: NatsConfig, *, history: HistoryConfig | None = None, **api: Any) -> Config:
    settings: dict[str, Any] = {"users": USERS, "listen": "127.0.0.1:0"}
    settings.update(api)
    return Config(nats=nats, api=ApiConfig(**settings), history=history or _EMPTY_HISTORY)


def port_state(
    name: str,
    status: PortStatus = PortStatus.READY,
    *,
    queue: int = 0,
    updated: dt.datetime | None = None,
    heartbeat: float = 60.0,
) -> PortState:
    return PortState(
        port=name,
        port_number=subjects.port_number(name),
        agent="host-a",
        device=f"/dev/{name}",
        status=status,
        queue=queue,
        imsi="460004372167365",
        updated=updated or contracts.utcnow(),
        heartbeat_interval=heartbeat,
    )


@dataclass
class Api:
    """An app running in-process, and a client that talks to it through ASGI."""

    app: Starlette
    client: httpx.AsyncClient
    bus: Bus

    @property
    def runtime(self) -> ApiRuntime:
        rt: ApiRuntime = self.app.state.runtime
        return rt

    async def set_ports(self, *states: PortState) -> None:
        """Store port states in the KV and wait until this app's port table has them."""
        for state in states:
            await self.bus.buckets.ports.put(state.port, contracts.encode(state))
        for _ in range(500):
            table = self.runtime.ports
            seen = [table.state(s.port) for s in states]
            if all(
                o is not None and o.updated == s.updated for o, s in zip(seen, states, strict=True)
            ):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the port table never caught up with the KV")

    async def jobs(self) -> list[tuple[str, SendJob]]:
        """Every job waiting in SMS_SEND (subject, job), read without consuming it."""
        info = await self.bus.js.stream_info(subjects.SEND_STREAM)
        found: list[tuple[str, SendJob]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await self.bus.js.get_msg(subjects.SEND_STREAM, seq)
            except Exception:
                continue
            assert msg.data is not None
            assert msg.subject is not None
            found.append((msg.subject, contracts.decode(msg.data, SendJob)))
        return found


@contextlib.asynccontextmanager
async def running_api(bus: Bus, config: Config, *, wire: bool = False) -> AsyncIterator[Api]:
    """The app in-process; its client speaks ASGI to it, or with `wire` HTTP over a socket
    to a uvicorn server in this event loop (the lean `/sendsms` protocol in front)."""
    app = create_app(config, nc=bus.nc)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        if wire:
            url = await stack.enter_async_context(_wire_server(config, app))
            client = httpx.AsyncClient(base_url=url)
        else:
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
        await stack.enter_async_context(client)
        api = Api(app=app, client=client, bus=bus)
        await api.runtime.ports.synced.wait()
        yield api


@contextlib.asynccontextmanager
async def _wire_server(config: Config, app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    uv = server_config(config, app, host="127.0.0.1", port=port, lifespan="off")
    server = uvicorn.Server(uv)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


Decide = Callable[[SendJob], tuple[SendStatus, str | None]]


def always_sent(job: SendJob) -> tuple[SendStatus, str | None]:
    return SendStatus.SENT, None


@dataclass
class AgentStandIn:
    """Answers jobs like an agent: result to reply_to and the event stream, status to KV."""

    bus: Bus
    port: str = "lte-1"
    decide: Decide = always_sent
    handled: list[SendJob] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = await self.bus.js.pull_subscribe(
            subjects.SEND_WILDCARD,
            durable="standin",
            stream=subjects.SEND_STREAM,
            config=ConsumerConfig(filter_subject=subjects.SEND_WILDCARD),
        )
        self._task = asyncio.create_task(self._run(sub))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, sub: Any) -> None:
        while True:
            try:
                msgs = await sub.fetch(10, timeout=0.2)
            except (NatsTimeoutError, TimeoutError):
                continue
            for msg in msgs:
                await msg.ack()
                await self.answer(contracts.decode(msg.data, SendJob))

    async def answer(self, job: SendJob) -> None:
        self.handled.append(job)
        port = job.port or self.port
        status, reason = self.decide(job)
        now = contracts.utcnow()
        result = SendResult(
            event_id=contracts.new_id(),
            port=port,
            port_number=subjects.port_number(port),
            imsi="460004372167365",
            time=now,
            id=job.id,
            caller_id=job.caller_id,
            to=job.to,
            status=status,
            reason=reason,
            parts=[PartResult(sequence=1, reference=7)],
            user=job.user,
        )
        await self.bus.buckets.messages.put(
            job.id,
            contracts.encode(
                MessageStatus(
                    id=job.id,
                    to=job.to,
                    state=contracts.result_state(status),
                    port=port,
                    agent="host-a",
                    reason=reason,
                    parts=result.parts,
                    caller_id=job.caller_id,
                    user=job.user,
                    created=job.created,
                    updated=now,
                )
            ),
        )
        data = contracts.encode(result)
        await self.bus.js.publish(subjects.event("result", port), data)
        if job.reply_to:
            await self.bus.nc.publish(job.reply_to, data)


@contextlib.asynccontextmanager
async def running_agent(bus: Bus) -> AsyncIterator[AgentStandIn]:
    stand_in = AgentStandIn(bus)
    await stand_in.start()
    try:
        yield stand_in
    finally:
        await stand_in.stop()


# --- a real uvicorn server -----------------------------------------------------------------


class ServerThread:
    """uvicorn serving an app on a loopback port, in a thread with its own event loop."""

    def __init__(
        self, config: Config, *, verify: ssl.SSLContext | bool = True, **overrides: Any
    ) -> None:
        self.port = free_port()
        self.scheme = "https" if config.api.tls_cert else "http"
        self.verify = verify
        self.app = create_app(config)
        uv = server_config(
            config, self.app, host="127.0.0.1", port=self.port, loop="asyncio", **overrides
        )
        self.server = uvicorn.Server(uv)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        for _ in range(1000):
            if self.server.started:
                break
            threading.Event().wait(0.01)
        else:
            raise AssertionError("uvicorn did not start")
        for _ in range(1000):  # the app connects to NATS in the background
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", verify=self.verify).status_code == 200:
                    return
            threading.Event().wait(0.01)
        raise AssertionError("the API never became ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)


@contextlib.contextmanager
def serving(config: Config, **overrides: Any) -> Iterator[ServerThread]:
    server = ServerThread(config, **overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def decode_json(body: bytes | str) -> Any:
    return msgspec.json.decode(body)
