"""`GET|POST /sendsms`: the hardware gateway's HTTP-to-SMS API, for existing integrations.

Credentials come from `username`/`password` (query or form) or HTTP Basic. Every error
answers in the requested report format with a fitting HTTP status.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from smsgate_api import params, reports
from smsgate_api.auth import basic_credentials
from smsgate_api.body import read_body
from smsgate_api.errors import ApiError
from smsgate_api.params import ReportFormat
from smsgate_api.sending import Submission, submit
from smsgate_api.web import client, instrument, runtime

_FORM = b"application/x-www-form-urlencoded"
_DEFAULTS = {f.value: f for f in ReportFormat}


async def _fields(request: Request) -> dict[str, str]:
    fields = params.parse_urlencoded(request.scope["query_string"])
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").encode().lower()
        body = await read_body(request)
        if body and (not content_type or content_type.startswith(_FORM)):
            params.parse_urlencoded(body, fields)  # the body wins over the query
    return fields


@instrument("/sendsms")
async def sendsms(request: Request) -> Response:
    rt = runtime(request)
    api = rt.config.api
    form = _DEFAULTS[api.default_report]
    message = ""
    try:
        fields = await _fields(request)
        message = fields.get("message", "")
        form = params.report_format(fields, api.default_report)
        if not api.http_to_sms:
            raise ApiError(403, "disabled", "sending over HTTP is switched off on this gateway")
        username, password = fields.get("username"), fields.get("password")
        if username is None and password is None:
            basic = basic_credentials(request.headers.get("authorization"))
            if basic is not None:
                username, password = basic
        user = await rt.auth.login(client(request), username, password)
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
        return Response(
            reports.render_error(form, message, error.message),
            status_code=error.status,
            headers=error.headers,
            media_type=reports.MEDIA_TYPES[form],
        )
    return Response(
        reports.render(form, checked.message, outcomes), media_type=reports.MEDIA_TYPES[form]
    )
