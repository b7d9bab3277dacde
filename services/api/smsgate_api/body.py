"""Request bodies, read with a cap: a huge or endless upload is refused before it is read.

A declared `Content-Length` over the cap is refused at once; a chunked body is read only
until it passes the cap. The answer asks to close the connection, so the server stops
taking the rest of the upload.
"""

from __future__ import annotations

from starlette.requests import Request

from smsgate_api.errors import ApiError, bad_parameter

# A /sendsms with 100 recipients and a 10-part Unicode text, percent-encoded, is ~50 KB.
MAX_BODY = 1024 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"request body too large: at most {limit} bytes",
        headers={"Connection": "close"},
    )


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, or 413 once it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise bad_parameter("Content-Length must be a number of bytes")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
