"""A callback receiver that prints what it gets, as the gateway's demo PHP receiver does.

`smsgate dev` points callbacks here unless given `--callback-url`, so a new user sees
the Type/Time/ID/IMSI/Status/Number/Port/SMS lines their own receiver will get.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import uvicorn
from smsgate.config import CallbackParams
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

FIELDS = (
    ("Type", "type"),
    ("Time", "time"),
    ("ID", "id"),
    ("IMSI", "imsi"),
    ("Status", "status"),
    ("Number", "phonenumber"),
    ("Port", "port"),
    ("SMS", "message"),
)


def render(values: dict[str, str], params: CallbackParams) -> str:
    """The block of lines the demo receiver appends to its file for one request."""
    names = {
        "type": "type",
        "id": "id",
        **{f: getattr(params, f) for f in CallbackParams.__struct_fields__},
    }
    return "\n".join(f"{label}: {values.get(names[key], '')}" for label, key in FIELDS)


def app(params: CallbackParams, out: Callable[[str], None] = print) -> Starlette:
    async def receive(request: Request) -> PlainTextResponse:
        values = dict(request.query_params)
        if request.method == "POST":
            values.update({k: str(v) for k, v in (await request.form()).items()})
        out(f"--- callback received ---\n{render(values, params)}")
        return PlainTextResponse("OK")

    return Starlette(routes=[Route("/{path:path}", receive, methods=["GET", "POST"])])


class ConsoleReceiver:
    """Serve the printing receiver on a loopback port until stopped."""

    def __init__(self, params: CallbackParams, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            app(params), host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}/sms"

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
