"""The Starlette application and the uvicorn server that runs it.

`create_app(config)` builds the app (its lifespan connects to NATS); `run_api(config)`
serves it: uvloop + httptools, TLS when `api.tls_cert`/`api.tls_key` are set, proxy
headers from `api.forwarded_allow_ips`, and an access log whose query strings are
redacted, so no password, number or text reaches a log line.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
import uvicorn
import uvloop
from nats.aio.client import Client
from smsgate import gc_tuning, logs
from smsgate.config import Config
from smsgate.config import parse_listen as config_listen
from smsgate.lifeline import tie_to
from smsgate.metrics import CONTENT_TYPE, AsyncSource, Source
from smsgate.metrics import remote as remote_metrics
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from smsgate_api import console, events, gateway, gateway_protocol, history, openapi, v1
from smsgate_api.access_log import AccessLog
from smsgate_api.runtime import ApiRuntime
from smsgate_api.web import json_response, runtime

log = logging.getLogger("smsgate.api")

_GATEWAY_METHODS = frozenset({"GET", "POST"})


class _Health(msgspec.Struct):
    status: str
    nats: bool | None = None
    streams: bool | None = None


async def healthz(request: Request) -> Response:
    return json_response(_Health("ok"))


async def readyz(request: Request) -> Response:
    rt = runtime(request)
    streams = await rt.streams_present()
    ready = rt.connected and streams
    body = _Health("ready" if ready else "not ready", nats=rt.connected, streams=streams)
    return json_response(body, 200 if ready else 503)


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    text = rt.metrics.render(
        queue_depth=await rt.queue_depth(),
        ports={str(k): v for k, v in rt.ports.counts().items()},
        nats_connected=rt.connected,
    )
    for source in request.app.extra_metrics:
        more = source()
        text += more if isinstance(more, str) else await more
    return Response(text, media_type=CONTENT_TYPE)


class ApiApp(Starlette):
    """The Starlette app, holding its runtime where routes reach it cheaply.

    `/sendsms` skips Starlette's middleware and router (when CORS is off): each time a
    request waits for NATS, every frame of that stack is suspended and resumed again,
    and the gateway endpoint already turns every error into its own response. It also
    answers with raw ASGI messages, without Request and Response objects.
    """

    runtime: ApiRuntime
    fast_gateway: bool = False
    access_log: AccessLog | None = None
    extra_metrics: Sequence[Source | AsyncSource] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        access = self.access_log
        if access is not None and scope["type"] == "http":
            outer = send

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    access.note(scope, message)
                await outer(message)

        if (
            self.fast_gateway
            and scope["type"] == "http"
            and scope["path"] == "/sendsms"
            and scope["method"] in _GATEWAY_METHODS
        ):
            await gateway.serve(self.runtime, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    config: Config,
    *,
    nc: Client | None = None,
    extra_metrics: Sequence[Source | AsyncSource] = (),
) -> ApiApp:
    """The API app; it uses `nc` when given, else connects (and reconnects) by itself.

    `extra_metrics`: more Prometheus text for `/metrics`, such as dev mode's agent and
    callback service (read from the dev process, `smsgate.metrics.remote`).
    """
    rt = ApiRuntime(config, nc=nc)
    access = AccessLog() if config.api.access_log else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if access is not None:
            access.start()
        await rt.start()
        try:
            yield
        finally:
            await history.close(rt)
            await rt.stop()
            if access is not None:
                access.stop()

    routes = [
        Route("/sendsms", gateway.sendsms, methods=["GET", "POST"]),
        Route("/api/v1/messages", v1.send_message, methods=["POST"]),
        Route("/api/v1/messages", history.list_messages, methods=["GET"]),
        Route("/api/v1/messages/{id}", history.get_message, methods=["GET"]),
        Route("/api/v1/inbox", history.inbox, methods=["GET"]),
        Route("/api/v1/ports", v1.list_ports, methods=["GET"]),
        Route("/api/v1/ports/{name}/{action}", v1.port_action, methods=["POST"]),
        Route("/api/v1/ussd", v1.ussd, methods=["POST"]),
        Route("/api/v1/events", events.events, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        Route("/docs", openapi.docs, methods=["GET"]),
        *console.routes(),
    ]
    middleware = []
    if config.api.cors:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.api.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            )
        )
    app = ApiApp(routes=routes, middleware=middleware, lifespan=lifespan)
    app.runtime = rt
    app.extra_metrics = tuple(extra_metrics)
    app.fast_gateway = not config.api.cors
    app.access_log = access
    app.state.runtime = rt
    return app


# --- serving -------------------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """`api.listen` (`host:port` or `[v6]:port`) into (host, port)."""
    return config_listen(listen, "api.listen")


def http_protocol(app: Starlette) -> type[asyncio.Protocol] | str:
    """What uvicorn serves connections with: the lean `/sendsms` protocol in front of the app
    (gateway_protocol.py), or uvicorn's own when the app must see every request (CORS)."""
    if isinstance(app, ApiApp) and app.fast_gateway:
        return gateway_protocol.protocol_for(app.runtime, app.access_log)
    return "httptools"


def server_config(config: Config, app: Starlette, **overrides: object) -> uvicorn.Config:
    """The uvicorn settings for `app` (used by run_api, dev mode and tests)."""
    api = config.api
    host, port = parse_listen(api.listen)
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": http_protocol(app),
        "lifespan": "on",
        "proxy_headers": True,
        "forwarded_allow_ips": api.forwarded_allow_ips,
        "access_log": False,  # ours (access_log.py) writes off the event loop
        "log_config": None,  # the process's logging setup applies
        "server_header": False,
        "ssl_certfile": api.tls_cert,
        "ssl_keyfile": api.tls_key,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Several worker processes each bind the port; the kernel spreads connections.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve(
    config: Config,
    *,
    sock: socket.socket | None = None,
    metrics_from: Sequence[str] = (),
) -> None:
    app = create_app(config, extra_metrics=[remote_metrics(url) for url in metrics_from])
    uv = server_config(config, app)
    gc_tuning.settle()  # modules, config and the app live as long as the process
    server = uvicorn.Server(uv)
    if sock is not None:
        await server.serve(sockets=[sock])
    elif config.api.workers > 1:
        await server.serve(sockets=[_bind(uv.host, uv.port)])
    else:
        await server.serve()


def _worker(
    config_json: bytes,
    parent: int,
    log_settings: tuple[str, str],
    sock: socket.socket | None,
    metrics_from: Sequence[str],
    own_group: bool,
) -> None:
    # uvicorn re-raises SIGTERM in the parent after its own shutdown, so the parent may
    # never get to stop its workers; and it may be killed: each worker gets SIGTERM when
    # its parent ends, however it ends.
    tie_to(parent)()
    if own_group:
        os.setpgid(0, 0)
    # A spawned process starts with no logging set up: set it up as the parent's was.
    logs.setup(*log_settings)
    config = msgspec.json.decode(config_json, type=Config)
    uvloop.run(_serve(config, sock=sock, metrics_from=metrics_from))


_Ends = dict[asyncio.Future[None], multiprocessing.process.BaseProcess]


class ApiProcesses:
    """API processes beside this one, each serving `config` and ending when this one ends.

    Each binds `api.listen` itself (SO_REUSEPORT), or serves `sock`, a listening socket
    this process bound, which each inherits. `metrics_from`: other processes' metrics
    endpoints whose text each one's `/metrics` adds to its own. `own_group`: each leaves
    this process's group, so a Ctrl-C in a terminal reaches this process only, which stops
    them in its own order. Start them from the main thread (see smsgate.lifeline).
    """

    def __init__(
        self,
        config: Config,
        count: int,
        *,
        sock: socket.socket | None = None,
        metrics_from: Sequence[str] = (),
        own_group: bool = False,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        payload = msgspec.json.encode(config)
        args = (payload, os.getpid(), logs.settings(), sock, tuple(metrics_from), own_group)
        self.processes = [
            context.Process(target=_worker, args=args, daemon=True, name=f"smsgate-api-{i + 1}")
            for i in range(count)
        ]
        self._watched: _Ends | None = None

    def start(self) -> None:
        for process in self.processes:
            process.start()

    async def first_exit(self) -> multiprocessing.process.BaseProcess:
        """The first of them to end (it has ended: its `exitcode` is set)."""
        ends = self._ends()
        done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        return ends[done.pop()]

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (each finishes the requests it has), then SIGKILL whoever lingers."""
        ends = self._ends()
        for process in ends.values():
            if process.exitcode is None:
                process.terminate()
        if ends:
            await asyncio.wait(ends, timeout=grace)
        loop = asyncio.get_running_loop()
        for end, process in ends.items():
            if not end.done():
                log.warning("API process %s still running after %gs: killed", process.pid, grace)
                loop.remove_reader(process.sentinel)
                process.kill()
            process.join()

    def _ends(self) -> _Ends:
        """A future per started process, done when it ends (its sentinel is readable)."""
        if self._watched is None:
            loop = asyncio.get_running_loop()
            self._watched = {}
            for process in self.processes:
                if process.pid is None:
                    continue
                end: asyncio.Future[None] = loop.create_future()
                loop.add_reader(process.sentinel, self._ended, process, end)
                self._watched[end] = process
        return self._watched

    @staticmethod
    def _ended(process: multiprocessing.process.BaseProcess, end: asyncio.Future[None]) -> None:
        asyncio.get_running_loop().remove_reader(process.sentinel)
        # Its end of the pipe closes as it exits: reaping it waits for no more than that.
        process.join()
        if not end.done():
            end.set_result(None)


def serve_api(config: Config) -> None:
    """Run the API on a uvloop event loop until signalled (the CLI's entry point)."""
    uvloop.run(run_api(config))


async def run_api(config: Config) -> None:
    """Serve the API until cancelled or signalled; `api.workers` processes share the port.

    Run it on uvloop (`serve_api`, or `uvloop.run(run_api(config))`): on the default
    asyncio loop the gateway API serves roughly a third fewer requests.
    """
    if not logging.getLogger().handlers:
        logs.setup()
    host, port = parse_listen(config.api.listen)
    scheme = "https" if config.api.tls_cert else "http"
    log.info("smsgate api on %s://%s:%d (%d worker(s))", scheme, host, port, config.api.workers)
    workers = ApiProcesses(config, config.api.workers - 1)
    workers.start()
    try:
        await _serve(config)
    finally:
        await workers.stop()
