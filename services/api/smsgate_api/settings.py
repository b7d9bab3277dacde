"""`GET /api/v1/settings`: what this API process runs with, for the console's settings view.

HTTP-to-SMS switches and limits, CORS, users and their ports, the callback URL, switches
and webhooks: read-only, from the config, and never a password, hash, token or secret.
URLs lose their password and query values whose names look secret. Admins see every
user; other users see themselves.
"""

from __future__ import annotations

import urllib.parse

import msgspec
from smsgate.config import Config, Webhook
from starlette.requests import Request
from starlette.responses import Response

from smsgate_api.auth import User
from smsgate_api.errors import ApiError
from smsgate_api.web import authenticated_user, instrument, json_error, json_response, runtime

_SECRET_WORDS = ("pass", "secret", "token", "key", "auth", "sig")


class UserView(msgspec.Struct, kw_only=True):
    name: str
    ports: list[str]
    admin: bool
    delivery_report: bool
    token: bool  # whether the user has a bearer token (never the token)


class HttpToSmsView(msgspec.Struct, kw_only=True):
    enabled: bool
    default_report: str
    max_recipients: int
    max_parts: int
    max_timeout: float
    port_wait: float


class CorsView(msgspec.Struct, kw_only=True):
    enabled: bool
    origins: list[str]


class WebhookView(msgspec.Struct, kw_only=True):
    name: str
    url: str
    format: str
    events: list[str]
    ports: list[str]
    signed: bool
    ordered: bool
    headers: list[str]  # header names only: their values are often credentials


class CallbackView(msgspec.Struct, kw_only=True):
    configured: bool  # False: this process's config has no [callback] receiver
    url: str | None
    inbound: bool
    results: bool
    reports: bool
    params: dict[str, str]
    extra: list[str]  # names of the fixed "user defined" parameters
    signed: bool
    time_zone: str
    webhooks: list[WebhookView]


class SettingsView(msgspec.Struct, kw_only=True):
    http_to_sms: HttpToSmsView
    cors: CorsView
    users: list[UserView]
    users_hidden: int  # users an admin would see, left out for this one
    callback: CallbackView


def mask_url(url: str) -> str:
    """`url` without its password, and with query values that look like secrets masked."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{parts.hostname or ''}"
        if parts.port is not None:
            netloc += f":{parts.port}"
    query = []
    for pair in parts.query.split("&") if parts.query else []:
        name, eq, value = pair.partition("=")
        if eq and any(word in name.lower() for word in _SECRET_WORDS):
            value = "***"
        query.append(f"{name}{eq}{value}")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query="&".join(query)))


def _webhook(hook: Webhook) -> WebhookView:
    return WebhookView(
        name=hook.name,
        url=mask_url(hook.url),
        format=hook.format,
        events=list(hook.events),
        ports=list(hook.ports),
        signed=hook.secret is not None,
        ordered=hook.ordered,
        headers=sorted(hook.headers),
    )


def settings_view(config: Config, user: User) -> SettingsView:
    """What the settings page shows `user`: admins see every user, others themselves."""
    api, callback = config.api, config.callback
    users = [
        UserView(
            name=u.name,
            ports=list(u.ports),
            admin=u.admin,
            delivery_report=u.delivery_report,
            token=u.token is not None,
        )
        for u in api.users
        if user.admin or u.name == user.name
    ]
    return SettingsView(
        http_to_sms=HttpToSmsView(
            enabled=api.http_to_sms,
            default_report=api.default_report,
            max_recipients=api.max_recipients,
            max_parts=api.max_parts,
            max_timeout=api.max_timeout,
            port_wait=api.port_wait,
        ),
        cors=CorsView(enabled=api.cors, origins=list(api.cors_origins)),
        users=users,
        users_hidden=len(api.users) - len(users),
        callback=CallbackView(
            configured=callback.url is not None or bool(callback.webhooks),
            url=mask_url(callback.url) if callback.url else None,
            inbound=callback.inbound,
            results=callback.results,
            reports=callback.reports,
            params=msgspec.structs.asdict(callback.params),
            extra=sorted(callback.extra),
            signed=callback.secret is not None,
            time_zone=callback.time_zone,
            webhooks=[_webhook(h) for h in callback.webhooks],
        ),
    )


@instrument("/api/v1/settings")
async def settings(request: Request) -> Response:
    try:
        user = await authenticated_user(request)
    except ApiError as error:
        return json_error(error)
    return json_response(settings_view(runtime(request).config, user))
