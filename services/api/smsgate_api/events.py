"""`GET /api/v1/events`: the SMS_EVENTS stream as Server-Sent Events.

Each event is `id: <stream sequence>`, `event: <result|report|inbound|port>`,
`data: <the event JSON>`. Filter with `?type=result,report` and `?port=lte-1,lte-2`.
Resume with `Last-Event-ID` (or `?since=<sequence>`): delivery starts after that
sequence; without either, only new events are sent. Each stream is an ordered,
ephemeral JetStream consumer that goes away with the connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from smsgate import subjects
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from smsgate_api import params
from smsgate_api.errors import ApiError, bad_parameter, unavailable
from smsgate_api.web import authenticated_user, instrument, json_error, runtime

KEEPALIVE = 15.0
_MAX_FILTERS = 64  # beyond this, filter ports here instead of in the server


def _kinds(value: str | None) -> list[str]:
    kinds = params.ports(value) or []
    unknown = [k for k in kinds if k not in subjects.EVENT_KINDS]
    if unknown:
        raise bad_parameter(
            f"unknown event type {unknown[0]!r}; types: {', '.join(subjects.EVENT_KINDS)}"
        )
    return kinds


def _start(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("since")
    if raw is None or not raw.strip():
        return None
    try:
        sequence = int(raw)
    except ValueError:
        raise bad_parameter(f"Last-Event-ID/since must be a stream sequence, not {raw!r}") from None
    if sequence < 0:
        raise bad_parameter("Last-Event-ID/since must be 0 or more")
    return sequence


async def _subscribe(
    js: JetStreamContext, filters: list[str], since: int | None
) -> JetStreamContext.PushSubscription:
    config = ConsumerConfig(
        filter_subjects=filters if len(filters) > 1 else None,
        deliver_policy=DeliverPolicy.NEW if since is None else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=None if since is None else since + 1,
        inactive_threshold=KEEPALIVE * 4,
    )
    try:
        return await js.subscribe(
            filters[0], stream=subjects.EVENTS_STREAM, ordered_consumer=True, config=config
        )
    except Exception as exc:
        raise unavailable(f"cannot read the event stream: {exc}") from None


async def _events(
    sub: JetStreamContext.PushSubscription, local_ports: set[str] | None
) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 2000\n: connected\n\n"
        while True:
            try:
                msg = await sub.next_msg(timeout=KEEPALIVE)
            except NatsTimeoutError:
                yield b": keepalive\n\n"
                continue
            try:
                kind, port = subjects.parse_event_subject(msg.subject)
            except ValueError:
                continue
            if local_ports is not None and port not in local_ports:
                continue
            sequence = msg.metadata.sequence.stream
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (sequence, kind.encode(), msg.data)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


@instrument("/api/v1/events")
async def events(request: Request) -> Response:
    rt = runtime(request)
    try:
        user = await authenticated_user(request)
        kinds = _kinds(request.query_params.get("type"))
        tokens = params.ports(request.query_params.get("port"))
        ports = rt.ports.resolve(tokens, user) if tokens else None
        if ports is None and not user.all_ports:
            ports = rt.ports.known(user)
            if not ports:
                raise ApiError(403, "port_not_allowed", f"user {user.name} may use no port")
        since = _start(request)
        if rt.js is None or not rt.connected:
            raise unavailable("not connected to NATS; try again shortly")
        kind_list: list[str | None] = list(kinds) or [None]
        port_list: list[str | None] = list(ports) if ports else [None]
        local_ports: set[str] | None = None
        if len(kind_list) * len(port_list) > _MAX_FILTERS:
            local_ports, port_list = set(ports or ()), [None]
        filters = [subjects.event_filter(k, p) for k in kind_list for p in port_list]
        sub = await _subscribe(rt.js, filters, since)
    except ApiError as error:
        return json_error(error)
    return StreamingResponse(
        _events(sub, local_ports),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
