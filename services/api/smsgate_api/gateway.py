"""`GET|POST /sendsms`: the hardware gateway's HTTP-to-SMS API, for existing integrations.

Credentials come from `username`/`password` (query or form) or HTTP Basic. Every error
answers in the requested report format with a fitting HTTP status.

`serve` answers with raw ASGI messages: it is the app's fast path (see `ApiApp`), where
integrations send their whole traffic. `sendsms` is the same endpoint as a Starlette
route, used when CORS middleware has to see the request.
"""

from __future__ import annotations

import contextlib
import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from smsgate_api import params, sendsms_reply
from smsgate_api.auth import basic_credentials
from smsgate_api.body import read_body
from smsgate_api.errors import ApiError
from smsgate_api.params import ReportFormat
from smsgate_api.runtime import ApiRuntime
from smsgate_api.sending import Submission, submit

log = logging.getLogger("smsgate.api")

ROUTE = "/sendsms"
ERROR_HEADER = "X-Smsgate-Error"  # why a request failed, with report=NO (no body)
_FORM = b"application/x-www-form-urlencoded"
_DEFAULTS = {f.value: f for f in ReportFormat}
_CONTENT_TYPES = {
    form: [(b"content-type", media.encode())] for form, media in sendsms_reply.MEDIA_TYPES.items()
}
_INTERNAL_ERROR = b"internal error"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _fields(scope: Scope, receive: Receive) -> dict[str, str]:
    body = b""
    if scope["method"] == "POST":
        body = await read_body(Request(scope, receive))
    return request_fields(
        scope["query_string"], scope["method"], _header(scope, b"content-type"), body
    )


def request_fields(
    query: bytes, method: str, content_type: str | None, body: bytes
) -> dict[str, str]:
    """The request's parameters: the query, then a POST form body (which wins)."""
    fields = params.parse_urlencoded(query)
    if method == "POST" and body:
        media_type = (content_type or "").encode().lower()
        if not media_type or media_type.startswith(_FORM):
            params.parse_urlencoded(body, fields)  # the body wins over the query
        else:
            media = media_type.split(b";")[0].strip().decode("latin-1")
            raise ApiError(
                415,
                "unsupported_body",
                f"a {media} body is not read: send the parameters as a form "
                "(application/x-www-form-urlencoded) or in the query string; "
                "JSON goes to POST /api/v1/messages",
            )
    return fields


def error_header(message: str) -> str:
    """An error message as an HTTP header value: one line of printable ASCII."""
    text = " ".join(message.split())
    return text.encode("ascii", "backslashreplace").decode("ascii")


Reply = tuple[int, ReportFormat, bytes, dict[str, str]]


async def answer(rt: ApiRuntime, scope: Scope, receive: Receive) -> Reply:
    """(status, report format, body, extra headers) for one `/sendsms` request."""
    try:
        fields = await _fields(scope, receive)
    except ApiError as error:
        return refusal(rt, error)
    return await reply(rt, fields, _header(scope, b"authorization"), _client(scope))


def refusal(rt: ApiRuntime, error: ApiError, fields: dict[str, str] | None = None) -> Reply:
    """An error answered in the report format the request asked for, or else the default."""
    default = rt.config.api.default_report
    form = _DEFAULTS[default]
    if fields is not None:
        with contextlib.suppress(ApiError):
            form = params.report_format(fields, default)
    headers = error.headers
    if form is ReportFormat.NO:  # no body to carry the reason: a header does
        headers = {**headers, ERROR_HEADER: error_header(error.message)}
    message = "" if fields is None else fields.get("message", "")
    return error.status, form, sendsms_reply.render_error(form, message, error.message), headers


async def reply(
    rt: ApiRuntime, fields: dict[str, str], authorization: str | None, client: str
) -> Reply:
    """The answer to a request with these parameters, `Authorization` header and client."""
    api = rt.config.api
    try:
        form = params.report_format(fields, api.default_report)
        if not api.http_to_sms:
            raise ApiError(403, "disabled", "sending over HTTP is switched off on this gateway")
        username, password = fields.get("username"), fields.get("password")
        if username is None and password is None:
            basic = basic_credentials(authorization)
            if basic is not None:
                username, password = basic
        user = await rt.auth.login(client, username, password)
        checked = params.send_params(
            fields,
            max_recipients=api.max_recipients,
            max_parts=api.max_parts,
            max_timeout=api.max_timeout,
        )
        outcomes = await submit(
            rt,
            Submission(
                user=user,
                numbers=checked.numbers,
                text=checked.message,
                ports=checked.ports,
                caller_id=checked.caller_id,
                timeout=checked.timeout,
                delivery_report=checked.delivery_report,
            ),
        )
    except ApiError as error:
        return refusal(rt, error, fields)
    return 200, form, sendsms_reply.render(form, checked.message, outcomes), {}


async def serve(rt: ApiRuntime, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one `/sendsms` request with raw ASGI messages (no Request or Response objects)."""
    started = time.perf_counter()
    status = 500
    try:
        try:
            status, form, body, extra = await answer(rt, scope, receive)
            headers = [(b"content-length", str(len(body)).encode()), *_CONTENT_TYPES[form]]
            for name, value in extra.items():
                headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        except Exception:
            log.exception("unexpected error in /sendsms")
            status, body = 500, _INTERNAL_ERROR
            headers = [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"text/plain; charset=utf-8"),
            ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    finally:
        rt.metrics.request(ROUTE, status, time.perf_counter() - started)


async def sendsms(request: Request) -> Response:
    """The same endpoint as a Starlette route (when middleware must see it)."""
    rt: ApiRuntime = request.scope["app"].runtime
    started = time.perf_counter()
    status = 500
    try:
        status, form, body, extra = await answer(rt, request.scope, request.receive)
        return Response(body, status, extra, sendsms_reply.MEDIA_TYPES[form])
    finally:
        rt.metrics.request(ROUTE, status, time.perf_counter() - started)
