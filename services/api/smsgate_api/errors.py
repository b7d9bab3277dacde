"""The one error type the API raises: an HTTP status, a stable code and a readable message."""

from __future__ import annotations


class ApiError(Exception):
    """A request that cannot be served; rendered in the caller's format by each front end."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_parameter(message: str) -> ApiError:
    return ApiError(400, "bad_parameter", message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "unavailable", message, headers={"Retry-After": "5"})


def busy(message: str) -> ApiError:
    return ApiError(503, "busy", message, headers={"Retry-After": "30"})
