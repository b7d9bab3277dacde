"""The JSON API under `/api/v1`: send, message status, ports, port control, USSD.

Authenticated with `Authorization: Bearer <token>` (the user's `token`) or HTTP Basic.
Port names are full names (`lte-3`); gateway numbers are accepted where a port is asked.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, TypeVar

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from smsgate import contracts, subjects
from smsgate.contracts import (
    ControlReply,
    MessageState,
    PortCommand,
    PortState,
    PortStatus,
    UssdRequest,
)
from starlette.requests import Request
from starlette.responses import Response

from smsgate_api import params
from smsgate_api.auth import User
from smsgate_api.body import read_body
from smsgate_api.errors import ApiError, bad_parameter, unavailable
from smsgate_api.sending import RecipientOutcome, Submission, submit
from smsgate_api.web import authenticated_user, instrument, json_error, json_response, runtime

Number = Annotated[str, msgspec.Meta(pattern=params.NUMBER_PATTERN)]
CallerId = Annotated[str, msgspec.Meta(pattern=params.ID_PATTERN, max_length=params.MAX_ID_LENGTH)]
_CONTROL_TIMEOUT = 5.0


class SendRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Send `text` to every number in `to`; all are queued or none."""

    to: Annotated[list[Number], msgspec.Meta(min_length=1)]
    text: Annotated[str, msgspec.Meta(min_length=1)]
    port: str | list[str] | None = None  # a name, a gateway number, or a list of them
    id: CallerId | None = None
    wait: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # seconds to wait for send results
    delivery_report: bool = True


class MessageOut(msgspec.Struct, kw_only=True):
    """One recipient's message as the request left it."""

    id: str
    to: str
    state: MessageState
    time: dt.datetime
    port: str | None = None
    port_number: int | None = None
    reason: str | None = None
    caller_id: str | None = None
    repeat: bool = False  # the id existed: not queued again, this is its current state


class SendResponse(msgspec.Struct, kw_only=True):
    messages: list[MessageOut]


class PortList(msgspec.Struct, kw_only=True):
    ports: list[PortState]
    # "unreachable": this API cannot reach NATS; every status is `unknown`, the rest of each
    # state is as last seen.
    bus: Literal["connected", "unreachable"] = "connected"


class UssdBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    port: str
    code: Annotated[str, msgspec.Meta(min_length=1)]  # checked against USSD_CODE_PATTERN
    timeout: Annotated[float, msgspec.Meta(gt=0, le=180)] = 30.0


_USSD_CODE = re.compile(contracts.USSD_CODE_PATTERN)
PortAction = Literal["disable", "enable", "drain"]
T = TypeVar("T")


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise bad_parameter(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise bad_parameter(f"request body is not valid JSON: {exc}") from None


def _out(outcome: RecipientOutcome) -> MessageOut:
    return MessageOut(
        id=outcome.id,
        to=outcome.to,
        state=outcome.state,
        time=outcome.time,
        port=outcome.port,
        port_number=outcome.port_number,
        reason=outcome.reason,
        caller_id=outcome.caller_id,
        repeat=outcome.repeat,
    )


@instrument("/api/v1/messages")
async def send_message(request: Request) -> Response:
    rt = runtime(request)
    api = rt.config.api
    try:
        user = await authenticated_user(request)
        if not api.http_to_sms:
            raise ApiError(403, "disabled", "sending over HTTP is switched off on this gateway")
        body = _decode(await read_body(request), SendRequest)
        if len(body.to) > api.max_recipients:
            raise bad_parameter(
                f"too many recipients: {len(body.to)}; at most {api.max_recipients} per request"
            )
        params.check_length(body.text, api.max_parts)
        ports = [body.port] if isinstance(body.port, str) else body.port
        outcomes = await submit(
            rt,
            Submission(
                user=user,
                numbers=body.to,
                text=body.text,
                ports=params.ports(",".join(ports)) if ports else None,
                caller_id=body.id,
                timeout=min(body.wait, api.max_timeout),
                delivery_report=body.delivery_report,
            ),
        )
    except ApiError as error:
        return json_error(error)
    return json_response(SendResponse(messages=[_out(o) for o in outcomes]), 202)


@instrument("/api/v1/ports")
async def list_ports(request: Request) -> Response:
    rt = runtime(request)
    try:
        user = await authenticated_user(request)
    except ApiError as error:
        return json_error(error)
    table = rt.ports
    states = [
        state
        for name in sorted(table.names)
        if user.may_use(name) and (state := table.state(name)) is not None
    ]
    if not rt.connected:
        unknown = [msgspec.structs.replace(s, status=PortStatus.UNKNOWN) for s in states]
        return json_response(PortList(ports=unknown, bus="unreachable"))
    return json_response(PortList(ports=states))


def _port_for(request: Request, user: User, name: str) -> str:
    try:
        [port] = runtime(request).ports.resolve([name], user)
    except ApiError as error:
        if error.status == 400:
            raise ApiError(404, "not_found", error.message) from None
        raise
    return port


async def _control(request: Request, subject: str, payload: bytes, seconds: float) -> Response:
    rt = runtime(request)
    nc = rt.nc
    if nc is None or not rt.connected:
        raise unavailable("not connected to NATS; try again shortly")
    try:
        reply = await nc.request(subject, payload, timeout=seconds)
    except NoRespondersError:
        raise unavailable("no agent answers for this port; is its agent running?") from None
    except (NatsTimeoutError, TimeoutError):
        raise ApiError(504, "timeout", "the port's agent did not answer in time") from None
    try:
        answer = contracts.decode(reply.data, ControlReply)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(502, "bad_reply", f"the agent's answer was unreadable: {exc}") from None
    return json_response(answer, 200 if answer.ok else 409)


@instrument("/api/v1/ports/{name}/{action}")
async def port_action(request: Request) -> Response:
    try:
        user = await authenticated_user(request)
        action = request.path_params["action"]
        if action not in ("disable", "enable", "drain"):
            raise ApiError(404, "not_found", "port actions are disable, enable and drain")
        port = _port_for(request, user, request.path_params["name"])
        command = PortCommand(action=action)
        return await _control(
            request, subjects.port_control(port), contracts.encode(command), _CONTROL_TIMEOUT
        )
    except ApiError as error:
        return json_error(error)


@instrument("/api/v1/ussd")
async def ussd(request: Request) -> Response:
    try:
        user = await authenticated_user(request)
        body = _decode(await read_body(request), UssdBody)
        if not _USSD_CODE.match(body.code):
            raise bad_parameter(
                f"code {body.code!r} is not a USSD code: use digits, '*', '#' and '+' "
                "(such as *100#), at most 160"
            )
        port = _port_for(request, user, body.port)
        command = UssdRequest(code=body.code, timeout=body.timeout)
        return await _control(
            request, subjects.ussd(port), contracts.encode(command), body.timeout + 5.0
        )
    except ApiError as error:
        return json_error(error)
