"""The command-line client: talks to the API (send, status, ports, tail) and the simulator.

Where it connects and as whom: `--api`/`SMSGATE_API` (default http://127.0.0.1:8080),
`--user NAME:PASSWORD`/`SMSGATE_USER`, else the credentials `smsgate dev` generated.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
from smsgate import contracts

DEFAULT_API = "http://127.0.0.1:8080"
DEV_STATE = Path(".smsgate")


class ClientError(Exception):
    """The API said no, or could not be reached; the message is for a person."""


@dataclass(frozen=True)
class ApiTarget:
    api: str
    user: str
    password: str


def target(api: str | None, user: str | None, state_dir: Path = DEV_STATE) -> ApiTarget:
    """Resolve where to connect and as whom, from flags, environment or dev mode's files."""
    url = (api or os.environ.get("SMSGATE_API") or DEFAULT_API).rstrip("/")
    given = user or os.environ.get("SMSGATE_USER")
    if given:
        name, sep, password = given.partition(":")
        if not sep:
            raise ClientError("--user takes NAME:PASSWORD")
        return ApiTarget(url, name, password)
    saved = state_dir / "credentials.json"
    if saved.exists():
        creds = json.loads(saved.read_text())
        return ApiTarget(url, creds["name"], creds["password"])
    raise ClientError("no credentials: give --user NAME:PASSWORD or set SMSGATE_USER")


def _error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
        detail = body.get("message") or body.get("error") or body
    except ValueError:
        detail = response.text.strip()
    return ClientError(
        f"{response.request.method} {response.url.path}: {response.status_code} {detail}"
    )


class Client:
    def __init__(self, where: ApiTarget, *, timeout: float = 30.0) -> None:
        self.http = httpx.AsyncClient(
            base_url=where.api, auth=(where.user, where.password), timeout=timeout
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the API at {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    async def send(
        self, to: list[str], text: str, *, port: str | None, wait: float, message_id: str | None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"to": to, "text": text, "wait": wait}
        if port:
            body["port"] = port
        if message_id:
            body["id"] = message_id
        answer = await self._call("POST", "/api/v1/messages", json=body, timeout=wait + 30)
        messages: list[dict[str, Any]] = answer["messages"]
        return messages

    async def status(self, message_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", f"/api/v1/messages/{message_id}")
        return answer

    async def history(self, query: dict[str, str]) -> dict[str, Any]:
        """One page of the message history (`messages`, `next`)."""
        answer: dict[str, Any] = await self._call("GET", "/api/v1/messages", params=query)
        return answer

    async def export(self, query: dict[str, str]) -> AsyncIterator[bytes]:
        """The history export (`format` in `query`: csv or jsonl), as it streams in."""
        try:
            async with self.http.stream(
                "GET", "/api/v1/messages", params=query, timeout=None
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.HTTPError as exc:
            raise ClientError(f"export from {self.http.base_url} broke: {exc}") from None

    async def ports(self) -> list[contracts.PortState]:
        answer = await self._call("GET", "/api/v1/ports")
        return msgspec.convert(answer["ports"], list[contracts.PortState])

    async def port_action(self, name: str, action: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("POST", f"/api/v1/ports/{name}/{action}")
        return answer

    async def events(
        self, kind: str | None, port: str | None, since: int | None
    ) -> AsyncIterator[tuple[str, str]]:
        """(sequence, JSON) for each event of the SSE stream, until the server ends it."""
        params = {k: v for k, v in (("type", kind), ("port", port)) if v}
        if since is not None:
            params["since"] = str(since)
        try:
            async with self.http.stream(
                "GET", "/api/v1/events", params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                sequence, data = "", []
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        sequence = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield sequence, "\n".join(data)
                        data = []
        except httpx.HTTPError as exc:
            raise ClientError(f"event stream from {self.http.base_url} broke: {exc}") from None


async def sim_inject(
    control: str, *, sender: str, text: str, port: str | None, number: str | None
) -> Any:
    body = {"sender": sender, "text": text, "to_port": port, "to_number": number}
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            response = await http.post(f"{control.rstrip('/')}/inject", json=body)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the simulator at {control}: {exc}") from None
    if response.status_code >= 400:
        raise _error(response)
    return response.json()


def sim_control(given: str | None, state_dir: Path = DEV_STATE) -> str:
    if given:
        return given
    saved = state_dir / "sim.json"
    if saved.exists():
        return str(json.loads(saved.read_text())["control"])
    raise ClientError(
        "where is the simulator? give --control URL (smsgate dev writes .smsgate/sim.json)"
    )


# --- rendering (pure) -------------------------------------------------------------------------

PORT_COLUMNS = (
    "PORT",
    "AGENT",
    "STATUS",
    "SIGNAL",
    "OPERATOR",
    "IMSI",
    "SENT",
    "FAILED",
    "UNKNOWN",
    "QUEUE",
    "LAST ERROR",
)


SEND_FAILED = 1  # `smsgate send`: a message failed
SEND_UNKNOWN = 3  # none failed, but one's outcome is unknown: it may have been sent


def send_exit_code(states: Iterable[str]) -> int:
    """`smsgate send`'s exit status from its messages' states: a failure wins, then an
    unknown outcome (a script must not send that one again blindly), else 0."""
    seen = set(states)
    if contracts.MessageState.FAILED in seen:
        return SEND_FAILED
    if contracts.MessageState.UNKNOWN in seen:
        return SEND_UNKNOWN
    return 0


def _stale(state: contracts.PortState, now: dt.datetime) -> bool:
    return (now - state.updated).total_seconds() > 3 * state.heartbeat_interval


def port_table(states: Iterable[contracts.PortState], now: dt.datetime | None = None) -> str:
    """Ports as a fixed-width table; a port whose agent stopped heartbeating shows down."""
    now = now or contracts.utcnow()
    rows = [PORT_COLUMNS]
    for s in sorted(states, key=lambda s: (s.agent, s.port_number or 0, s.port)):
        unknown = s.status is contracts.PortStatus.UNKNOWN  # the API cannot reach NATS
        status = "down" if _stale(s, now) and not unknown else s.status.value
        rows.append(
            (
                s.port,
                s.agent,
                status,
                "" if s.signal is None else f"{s.signal} dBm",
                s.operator or "",
                s.imsi or "",
                str(s.sent),
                str(s.failed),
                str(s.unknown),
                str(s.queue),
                s.last_error or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(PORT_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def event_line(data: str) -> str:
    """One readable line per bus event, for `smsgate tail`."""
    event = contracts.decode_event(data)
    when = event.time.astimezone().strftime("%H:%M:%S")
    if isinstance(event, contracts.SendResult):
        what = f"{event.status.value:<6} id={event.id} to={event.to}"
        if event.reason:
            what += f" reason={event.reason!r}"
    elif isinstance(event, contracts.DeliveryReport):
        what = f"{event.state.value:<6} id={event.id} to={event.to} {event.reason}"
    elif isinstance(event, contracts.InboundSms):
        what = f"from={event.sender} parts={event.parts} text={event.text!r}"
    else:
        what = f"{event.change} ({event.state.status.value})"
    kind = type(event).__struct_config__.tag  # result|report|inbound|port, as --type takes
    return f"{when} {kind!s:<8} {event.port:<12} {what}"


HISTORY_COLUMNS = ("TIME", "DIR", "NUMBER", "STATE", "PORT", "USER", "ID", "TEXT")


def history_table(messages: Iterable[dict[str, Any]], *, width: int = 40) -> str:
    """History rows as a fixed-width table, newest first as the API gives them."""
    rows = [HISTORY_COLUMNS]
    for m in messages:
        when = dt.datetime.fromisoformat(m["created"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        text = (m.get("text") or "").replace("\n", " ")
        rows.append(
            (
                when,
                m["direction"],
                m["number"],
                m["state"],
                m.get("port") or "",
                m.get("user") or "",
                m["id"],
                text if len(text) <= width else text[: width - 1] + "…",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(HISTORY_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
