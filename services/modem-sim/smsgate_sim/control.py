"""The HTTP control interface: look at ports and logs, inject SMS, switch faults, pull cables.

A Starlette app on uvicorn, bound to loopback by default. Bodies and answers are JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec
import uvicorn
from smsgate.pdu import Alphabet, PduError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .faults import Faults, FaultUpdate, garbage
from .stats import ModemStats, NetworkStats

if TYPE_CHECKING:
    from .modem import VirtualModem
    from .simulator import Simulator

T = TypeVar("T")


class PortInfo(msgspec.Struct, kw_only=True):
    """One port as the control interface shows it."""

    name: str
    device: str
    pts: str | None  # the pty behind the stable link, when the transport is pty
    profile: str
    msisdn: str
    imsi: str
    iccid: str
    imei: str
    plugged: bool
    powered: bool
    sim: str  # READY, SIM PIN, SIM PUK or BUSY
    registration: int  # +CREG <stat>
    next_mr: int
    held: int  # messages and reports the network holds for it
    storage: dict[str, tuple[int, int]]  # memory -> (used, total)
    faults: Faults
    stats: ModemStats


class InjectRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sender: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    text: str
    to_port: str | None = None
    to_number: str | None = None
    alphabet: Alphabet | None = None
    order: Literal["normal", "reverse", "shuffle"] = "normal"


class UrcRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1)]


class GarbageRequest(msgspec.Struct, forbid_unknown_fields=True):
    size: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None


class AutoreplyRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class Totals(msgspec.Struct, kw_only=True):
    network: NetworkStats
    modems: ModemStats  # every port's counters added up


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


async def _body(request: Request, kind: type[T]) -> T:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise ControlError(400, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ControlError(400, f"body is not JSON: {exc}") from None


def port_info(sim: Simulator, modem: VirtualModem) -> PortInfo:
    endpoint = sim.endpoint(modem.name)
    return PortInfo(
        name=modem.name,
        device=endpoint.device,
        pts=getattr(endpoint, "pts", None),
        profile=modem.profile.name,
        msisdn=modem.sim.msisdn,
        imsi=modem.sim.imsi,
        iccid=modem.sim.iccid,
        imei=modem.imei,
        plugged=endpoint.plugged,
        powered=modem.powered,
        sim=modem.sim_state(),
        registration=modem.registration(),
        next_mr=modem.next_mr,
        held=sim.network.held(modem),
        storage={name: (m.used, m.size) for name, m in modem.memories.items()},
        faults=modem.faults,
        stats=modem.stats,
    )


def totals(sim: Simulator) -> Totals:
    summed = ModemStats()
    for modem in sim.modems.values():
        for field in ModemStats.__struct_fields__:
            setattr(summed, field, getattr(summed, field) + getattr(modem.stats, field))
    return Totals(network=sim.network.stats, modems=summed)


def build_app(sim: Simulator) -> Starlette:
    """The control app for one simulator."""

    def modem_of(request: Request) -> VirtualModem:
        name = request.path_params["name"]
        try:
            return sim.modem(name)
        except KeyError:
            raise ControlError(404, f"no port {name!r}") from None

    async def ports(request: Request) -> Any:
        return [port_info(sim, m) for m in sim.modems.values()]

    async def devices(request: Request) -> Any:
        return sim.devices

    async def port(request: Request) -> Any:
        return port_info(sim, modem_of(request))

    async def port_stats(request: Request) -> Any:
        return modem_of(request).stats

    async def port_sent(request: Request) -> Any:
        return list(modem_of(request).sent)

    async def sent(request: Request) -> Any:
        name = request.query_params.get("port")
        if name is not None and name not in sim.modems:
            raise ControlError(404, f"no port {name!r}")
        try:
            since = float(request.query_params.get("since") or 0)
        except ValueError:
            raise ControlError(400, "since: a Unix time in seconds") from None
        return [part for part in sim.sent(name) if part.time >= since]

    async def stats(request: Request) -> Any:
        return totals(sim)

    async def inject(request: Request) -> Any:
        body = await _body(request, InjectRequest)
        try:
            return await sim.inject(
                body.text,
                sender=body.sender,
                to_port=body.to_port,
                to_number=body.to_number,
                alphabet=body.alphabet,
                order=body.order,
            )
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from None
        except (ValueError, PduError) as exc:
            raise ControlError(400, str(exc)) from None

    async def port_faults(request: Request) -> Any:
        modem = modem_of(request)
        if request.method == "DELETE":
            sim.clear_faults(modem.name)
        else:
            sim.set_fault(modem.name, await _body(request, FaultUpdate))
        return modem.faults

    async def all_faults(request: Request) -> Any:
        if request.method == "DELETE":
            sim.clear_faults()
        else:
            sim.set_fault(None, await _body(request, FaultUpdate))
        return {name: m.faults for name, m in sim.modems.items()}

    async def unplug(request: Request) -> Any:
        modem = modem_of(request)
        await sim.unplug(modem.name)
        return port_info(sim, modem)

    async def replug(request: Request) -> Any:
        modem = modem_of(request)
        await sim.replug(modem.name)
        return port_info(sim, modem)

    async def reset(request: Request) -> Any:
        modem = modem_of(request)
        await sim.reset(modem.name)
        return port_info(sim, modem)

    async def urc(request: Request) -> Any:
        modem = modem_of(request)
        body = await _body(request, UrcRequest)
        modem.urc(*body.text.splitlines())
        return {"ok": True}

    async def noise(request: Request) -> Any:
        modem = modem_of(request)
        body = await _body(request, GarbageRequest)
        modem.emit(garbage(modem.rng, body.size))
        return {"ok": True}

    async def autoreplies(request: Request) -> Any:
        return sim.network.autoreplies

    async def autoreply(request: Request) -> Any:
        number = request.path_params["number"]
        text = None if request.method == "DELETE" else (await _body(request, AutoreplyRequest)).text
        sim.network.set_autoreply(number, text)
        return sim.network.autoreplies

    async def healthz(request: Request) -> Any:
        return {"ok": True, "ports": len(sim.modems)}

    def route(path: str, handler: Callable[[Request], Awaitable[Any]], methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return _json(await handler(request))
            except ControlError as exc:
                return _json({"error": str(exc)}, exc.status)

        return Route(path, endpoint, methods=methods)

    return Starlette(
        routes=[
            route("/healthz", healthz, ["GET"]),
            route("/ports", ports, ["GET"]),
            route("/devices", devices, ["GET"]),
            route("/stats", stats, ["GET"]),
            route("/sent", sent, ["GET"]),
            route("/inject", inject, ["POST"]),
            route("/faults", all_faults, ["POST", "DELETE"]),
            route("/autoreply", autoreplies, ["GET"]),
            route("/autoreply/{number}", autoreply, ["PUT", "DELETE"]),
            route("/ports/{name}", port, ["GET"]),
            route("/ports/{name}/stats", port_stats, ["GET"]),
            route("/ports/{name}/sent", port_sent, ["GET"]),
            route("/ports/{name}/faults", port_faults, ["POST", "DELETE"]),
            route("/ports/{name}/unplug", unplug, ["POST"]),
            route("/ports/{name}/replug", replug, ["POST"]),
            route("/ports/{name}/reset", reset, ["POST"]),
            route("/ports/{name}/urc", urc, ["POST"]),
            route("/ports/{name}/garbage", noise, ["POST"]),
        ]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals belong to whoever runs the simulator, not to its control interface


class ControlServer:
    """uvicorn serving the control app on `listen` (host:port, port 0 picks a free one)."""

    def __init__(self, sim: Simulator, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port or 0)
        self._app = build_app(sim)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so,
        # and without it every answer waits out the peer's delayed ACK (40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise RuntimeError("control interface stopped while starting")
            await asyncio.sleep(0.005)
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
