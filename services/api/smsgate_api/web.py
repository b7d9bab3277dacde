"""Small HTTP helpers the routes share: the runtime, the client address, timing, JSON."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from smsgate_api.auth import User
from smsgate_api.errors import ApiError
from smsgate_api.runtime import ApiRuntime
from smsgate_api.session import session_user

Endpoint = Callable[[Request], Awaitable[Response]]

_encoder = msgspec.json.Encoder()


def runtime(request: Request) -> ApiRuntime:
    """The runtime of the app serving `request` (an attribute read: this is per request)."""
    rt: ApiRuntime = request.scope["app"].runtime
    return rt


def client(request: Request) -> str:
    """The caller's address (uvicorn has already applied trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


async def authenticated_user(request: Request) -> User:
    """The user of a Bearer or Basic `Authorization` header, else of a console session."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        user = session_user(request, runtime(request))
        if user is not None:
            return user
    return await runtime(request).auth.from_headers(client(request), authorization)


def instrument(route: str) -> Callable[[Endpoint], Endpoint]:
    """Count the endpoint's requests by outcome and time them, under `route`."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def timed(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await endpoint(request)
                status = response.status_code
                return response
            finally:
                runtime(request).metrics.request(route, status, time.perf_counter() - started)

        return timed

    return wrap


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(body), status_code=status, headers=headers, media_type="application/json"
    )


class ErrorBody(msgspec.Struct):
    """An /api/v1 error: a stable code and a message a person can act on."""

    error: str
    message: str


def json_error(error: ApiError) -> Response:
    return json_response(ErrorBody(error.code, error.message), error.status, error.headers)
