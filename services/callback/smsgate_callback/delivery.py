"""One HTTP attempt: build the request for an event, send it, classify what happened.

Delivered: any 2xx. Retried: connection errors, timeouts, 408, 429 and 5xx (honouring
Retry-After). Permanent, dead-lettered at once: everything else (other 4xx, 3xx, since
redirects are not followed), because sending the same request again cannot change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import httpx
from smsgate import contracts

from smsgate_callback import render, signing
from smsgate_callback.retry import parse_retry_after

Format = Literal["gateway", "form", "json"]
USER_AGENT = "smsgate-callback/1"
RETRYABLE_STATUS = frozenset({408, 429})
BODY_CAP = 64 * 1024  # bytes of a response we read; the rest is not worth the memory
REASON_CAP = 200  # characters of a failing response kept in the error text


class AttemptVerdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt came to; `label` is the metrics bucket (2xx, 5xx, timeout, ...)."""

    verdict: AttemptVerdict
    label: str
    error: str = ""
    status_code: int | None = None
    retry_after: float | None = None
    latency: float = 0.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how one webhook sends: URL, format, field style, key and extra headers."""

    url: httpx.URL
    format: Format = "gateway"
    style: render.GatewayStyle = field(default_factory=render.GatewayStyle)
    secret: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    @classmethod
    def parse_url(cls, url: str) -> httpx.URL:
        """The URL as httpx sees it; only http and https with a host are accepted."""
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"callback url {url!r}: expected http:// or https:// and a host")
        return parsed


class RequestTemplate:
    """What every request of one target shares, worked out once: the URL before the
    fields, the fixed headers and the timeouts. `build` adds one event's fields."""

    __slots__ = ("_extensions", "_headers", "_url", "method", "target")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.method = "GET" if target.format == "gateway" else "POST"
        url = target.url
        self._url: httpx.URL | str = url
        if target.format == "gateway":
            # The fields are appended to the URL's own query, as a string: one parse per
            # request (in httpx.Request) instead of a parse and a copy.
            own = url.query.decode("ascii")
            base = str(url.copy_with(query=None, fragment=None))
            self._url = f"{base}?{own}&" if own else f"{base}?"
        ours = {name.lower() for name in (*_OWN_HEADERS, "content-type")}
        custom = [(k, v) for k, v in target.headers.items() if k.lower() not in ours]
        # What httpx.AsyncClient sent by default, less Accept-Encoding: we read at most
        # the start of a failing answer, and never want to decompress it.
        headers = [("Accept", "*/*"), ("User-Agent", USER_AGENT)]
        names = {k.lower() for k, _ in custom}
        headers = [(k, v) for k, v in headers if k.lower() not in names] + custom
        if self.method == "POST":
            kind = "application/json" if target.format == "json" else _FORM_TYPE
            headers.append(("Content-Type", kind))
        self._headers = [(k.encode("ascii"), v.encode("ascii")) for k, v in headers]
        # httpx's per-phase limits; `attempt` bounds the whole exchange besides.
        self._extensions = {"timeout": httpx.Timeout(target.timeout).as_dict()}

    def build(self, event: contracts.Event, *, attempt: int, now: float) -> httpx.Request:
        """The HTTP request for one attempt at `event`, signed when the target has a secret."""
        target = self.target
        timestamp = str(int(now))
        headers = [
            *self._headers,
            (_EVENT_ID, event.event_id.encode("ascii")),
            (_EVENT_TYPE, _EVENT_TYPES[type(event)]),
            (_ATTEMPT, str(attempt).encode("ascii")),
            (_TIMESTAMP, timestamp.encode("ascii")),
        ]
        url, content = self._url, b""
        if target.format == "json":
            content = render.json_body(event)
        else:
            query = render.encode_fields(render.gateway_fields(event, target.style))
            if target.format == "form":
                content = query.encode("ascii")
            else:
                url = f"{url}{query}"
        request = httpx.Request(
            self.method,
            url,
            headers=headers,
            content=content or None,
            extensions=self._extensions,
        )
        if target.secret:
            # Sign what goes on the wire: httpx's own rendering of the query, not our string.
            signed = signing.signed_content(self.method, request.url.query, content)
            request.headers[signing.SIGNATURE_HEADER] = signing.sign(
                target.secret, timestamp, signed
            )
        return request


_FORM_TYPE = "application/x-www-form-urlencoded"
_OWN_HEADERS = (
    signing.EVENT_ID_HEADER,
    signing.EVENT_TYPE_HEADER,
    signing.ATTEMPT_HEADER,
    signing.TIMESTAMP_HEADER,
    signing.SIGNATURE_HEADER,
)
_EVENT_ID, _EVENT_TYPE, _ATTEMPT, _TIMESTAMP = (name.encode("ascii") for name in _OWN_HEADERS[:4])


def build_request(
    target: Target, event: contracts.Event, *, attempt: int, now: float
) -> httpx.Request:
    """The HTTP request for one attempt at `event` (a webhook keeps its RequestTemplate)."""
    return RequestTemplate(target).build(event, attempt=attempt, now=now)


_EVENT_TYPES: Mapping[type[contracts.Event], bytes] = {
    contracts.SendResult: b"result",
    contracts.DeliveryReport: b"report",
    contracts.InboundSms: b"inbound",
    contracts.PortEvent: b"port",
}


def classify_response(
    status: int, reason: str, body: bytes, retry_after: str | None, now: dt.datetime
) -> AttemptOutcome:
    """The verdict on a response the receiver gave."""
    if 200 <= status < 300:
        return AttemptOutcome(AttemptVerdict.DELIVERED, "2xx", status_code=status)
    text = body.decode("utf-8", errors="replace").strip()[:REASON_CAP]
    error = f"HTTP {status} {reason}" + (f": {text}" if text else "")
    if status in RETRYABLE_STATUS or status >= 500:
        label = str(status) if status in RETRYABLE_STATUS else "5xx"
        wait = parse_retry_after(retry_after, now)
        return AttemptOutcome(AttemptVerdict.RETRY, label, error, status, retry_after=wait)
    return AttemptOutcome(AttemptVerdict.PERMANENT, f"{status // 100}xx", error, status)


def classify_error(exc: BaseException, timeout: float) -> AttemptOutcome:
    """The verdict on a request that got no response: always worth another try."""
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        detail = f" ({type(exc).__name__})" if isinstance(exc, httpx.TimeoutException) else ""
        return AttemptOutcome(
            AttemptVerdict.RETRY, "timeout", f"no response within {timeout:g}s{detail}"
        )
    label = "connect" if isinstance(exc, httpx.ConnectError) else "error"
    return AttemptOutcome(AttemptVerdict.RETRY, label, f"{type(exc).__name__}: {exc}".rstrip(": "))


async def _read_capped(stream: httpx.AsyncByteStream) -> bytes:
    # Straight from the transport's stream: no content decoding (we ask for none), and a
    # small answer is one chunk.
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_CAP:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def attempt(
    transport: httpx.AsyncBaseTransport, request: httpx.Request, time_limit: float
) -> AttemptOutcome:
    """Send one request and classify the result; never raises for network trouble.

    The request goes to the transport itself: a callback follows no redirects, keeps no
    cookies and needs no auth flow, so the client's layers would be work for nothing.
    """
    started = time.perf_counter()
    response: httpx.Response | None = None
    try:
        # httpx's timeout bounds each phase; this bounds the whole exchange (slow drips too).
        async with asyncio.timeout(time_limit):
            response = await transport.handle_async_request(request)
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            body = await _read_capped(stream)
    except (TimeoutError, httpx.HTTPError) as exc:
        outcome = classify_error(exc, time_limit)
    else:
        outcome = classify_response(
            response.status_code,
            response.reason_phrase,
            body,
            response.headers.get("Retry-After"),
            dt.datetime.now(dt.UTC),
        )
    finally:
        if response is not None:
            # Outside the time limit: a cancellation landing in the middle of the close
            # would leave the connection busy for good, and a pool of one unusable. The
            # verdict stands whatever the close runs into: httpcore drops the connection.
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
    latency = time.perf_counter() - started
    return AttemptOutcome(
        outcome.verdict,
        outcome.label,
        outcome.error,
        outcome.status_code,
        outcome.retry_after,
        latency,
    )
