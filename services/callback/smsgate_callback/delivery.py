"""One HTTP attempt: build the request for an event, send it, classify what happened.

Delivered: any 2xx. Retried: connection errors, timeouts, 408, 429 and 5xx (honouring
Retry-After). Permanent, dead-lettered at once: everything else (other 4xx, 3xx, since
redirects are not followed), because sending the same request again cannot change it.
"""

from __future__ import annotations

import asyncio
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


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to; `label` is the metrics bucket (2xx, 5xx, timeout, ...)."""

    verdict: Verdict
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


def build_request(
    target: Target, event: contracts.Event, *, attempt: int, now: float
) -> httpx.Request:
    """The HTTP request for one attempt at `event`, signed when the target has a secret."""
    url, method, content = target.url, "GET", b""
    headers = {
        "User-Agent": USER_AGENT,
        **target.headers,
        signing.EVENT_ID_HEADER: event.event_id,
        signing.EVENT_TYPE_HEADER: _event_type(event),
        signing.ATTEMPT_HEADER: str(attempt),
        signing.TIMESTAMP_HEADER: str(int(now)),
    }
    if target.format == "json":
        method, content = "POST", render.json_body(event)
        headers["Content-Type"] = "application/json"
    else:
        query = render.encode_fields(render.gateway_fields(event, target.style))
        if target.format == "form":
            method, content = "POST", query.encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            joined = f"{url.query.decode('ascii')}&{query}" if url.query else query
            url = url.copy_with(query=joined.encode("ascii"))
    request = httpx.Request(method, url, headers=headers, content=content or None)
    if target.secret:
        # Sign what goes on the wire: httpx's own rendering of the query, not our string.
        signed = signing.signed_content(method, request.url.query, content)
        timestamp = headers[signing.TIMESTAMP_HEADER]
        request.headers[signing.SIGNATURE_HEADER] = signing.sign(target.secret, timestamp, signed)
    return request


_EVENT_TYPES: Mapping[type[contracts.Event], str] = {
    contracts.SendResult: "result",
    contracts.DeliveryReport: "report",
    contracts.InboundSms: "inbound",
    contracts.PortEvent: "port",
}


def _event_type(event: contracts.Event) -> str:
    return _EVENT_TYPES[type(event)]


def classify_response(
    status: int, reason: str, body: bytes, retry_after: str | None, now: dt.datetime
) -> Outcome:
    """The verdict on a response the receiver gave."""
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, "2xx", status_code=status)
    text = body.decode("utf-8", errors="replace").strip()[:REASON_CAP]
    error = f"HTTP {status} {reason}" + (f": {text}" if text else "")
    if status in RETRYABLE_STATUS or status >= 500:
        label = str(status) if status in RETRYABLE_STATUS else "5xx"
        wait = parse_retry_after(retry_after, now)
        return Outcome(Verdict.RETRY, label, error, status, retry_after=wait)
    return Outcome(Verdict.PERMANENT, f"{status // 100}xx", error, status)


def classify_error(exc: BaseException, timeout: float) -> Outcome:
    """The verdict on a request that got no response: always worth another try."""
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        detail = f" ({type(exc).__name__})" if isinstance(exc, httpx.TimeoutException) else ""
        return Outcome(Verdict.RETRY, "timeout", f"no response within {timeout:g}s{detail}")
    label = "connect" if isinstance(exc, httpx.ConnectError) else "error"
    return Outcome(Verdict.RETRY, label, f"{type(exc).__name__}: {exc}".rstrip(": "))


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_CAP:
            break
    return b"".join(chunks)


async def attempt(client: httpx.AsyncClient, request: httpx.Request, time_limit: float) -> Outcome:
    """Send one request and classify the result; never raises for network trouble."""
    started = time.perf_counter()
    try:
        # httpx's timeout bounds each phase; this bounds the whole exchange (slow drips too).
        async with asyncio.timeout(time_limit):
            response = await client.send(request, stream=True)
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
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
    latency = time.perf_counter() - started
    return Outcome(
        outcome.verdict,
        outcome.label,
        outcome.error,
        outcome.status_code,
        outcome.retry_after,
        latency,
    )
