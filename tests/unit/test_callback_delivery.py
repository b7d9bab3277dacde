"""Requests and verdicts of one attempt, through httpx.MockTransport (no sockets)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from smsgate import contracts
from smsgate_callback import delivery, signing
from smsgate_callback.delivery import AttemptVerdict, Target

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
EVENT = contracts.SendResult(
    event_id="ev-1",
    id="c 1",
    caller_id="c 1",
    port="lte-4",
    port_number=4,
    imsi="4600",
    time=NOW,
    to="+15550100",
    status=contracts.SendStatus.SENT,
)


def target(url: str = "http://receiver.test/hook", **fields: object) -> Target:
    return Target(url=Target.parse_url(url), **fields)  # type: ignore[arg-type]


def test_gateway_get_appends_fields_to_the_urls_own_query() -> None:
    request = delivery.build_request(
        target("https://r.test/in.php?key=a%20b"), EVENT, attempt=3, now=1700000000.9
    )
    assert request.method == "GET"
    assert request.url.query.startswith(b"key=a%20b&num=%2B15550100&port=4&portname=lte-4&id=c%201")
    assert request.content == b""
    assert request.headers[signing.EVENT_ID_HEADER] == "ev-1"
    assert request.headers[signing.EVENT_TYPE_HEADER] == "result"
    assert request.headers[signing.ATTEMPT_HEADER] == "3"
    assert request.headers[signing.TIMESTAMP_HEADER] == "1700000000"
    assert signing.SIGNATURE_HEADER not in request.headers
    assert request.headers["user-agent"] == delivery.USER_AGENT


def test_form_and_json_posts() -> None:
    form = delivery.build_request(target(format="form"), EVENT, attempt=1, now=0)
    assert form.method == "POST"
    assert form.url.query == b""
    assert form.content.startswith(b"num=%2B15550100&port=4")
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    body = delivery.build_request(target(format="json"), EVENT, attempt=1, now=0)
    assert body.headers["content-type"] == "application/json"
    assert json.loads(body.content)["event_id"] == "ev-1"
    assert contracts.decode_event(body.content) == EVENT


@pytest.mark.parametrize("fmt", ["gateway", "form", "json"])
def test_signature_covers_what_is_sent(fmt: str) -> None:
    request = delivery.build_request(
        target("http://r.test/x?t=1", format=fmt, secret="k"), EVENT, attempt=1, now=1700000000
    )
    content = request.url.query if request.method == "GET" else request.content
    timestamp = request.headers[signing.TIMESTAMP_HEADER]
    signature = request.headers[signing.SIGNATURE_HEADER]
    assert signing.verify("k", timestamp, content, signature, now=1700000000)


def test_a_template_builds_what_build_request_builds() -> None:
    for fmt in ("gateway", "form", "json"):
        spec = target("https://r.test/in?key=1", format=fmt, secret="k", headers={"A": "b"})
        template = delivery.RequestTemplate(spec)
        one = template.build(EVENT, attempt=2, now=1700000000)
        other = delivery.build_request(spec, EVENT, attempt=2, now=1700000000)
        assert (one.method, one.url, one.content) == (other.method, other.url, other.content)
        assert one.headers.multi_items() == other.headers.multi_items()


def test_the_headers_a_gateway_get_carries() -> None:
    request = delivery.build_request(target(), EVENT, attempt=1, now=0)
    assert [name for name, _ in request.headers.multi_items()] == [
        "host",
        "accept",
        "user-agent",
        "x-smsgate-event-id",
        "x-smsgate-event-type",
        "x-smsgate-attempt",
        "x-smsgate-timestamp",
    ]
    # No Accept-Encoding: a failing answer's start is read as it is, never decompressed.
    assert request.extensions["timeout"] == httpx.Timeout(10.0).as_dict()


def test_custom_headers_do_not_override_ours() -> None:
    request = delivery.build_request(
        target(
            format="json",
            headers={
                "Authorization": "Bearer t",
                signing.EVENT_ID_HEADER.lower(): "forged",
                "content-type": "text/plain",
                "User-Agent": "mine/2",
            },
        ),
        EVENT,
        attempt=1,
        now=0,
    )
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers.get_list(signing.EVENT_ID_HEADER) == ["ev-1"]
    assert request.headers.get_list("content-type") == ["application/json"]
    assert request.headers.get_list("user-agent") == ["mine/2"]


@pytest.mark.parametrize("url", ["ftp://r.test/x", "r.test/x", "http:///nohost"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="expected http"):
        Target.parse_url(url)


@pytest.mark.parametrize(
    ("status", "verdict", "label"),
    [
        (200, AttemptVerdict.DELIVERED, "2xx"),
        (204, AttemptVerdict.DELIVERED, "2xx"),
        (301, AttemptVerdict.PERMANENT, "3xx"),
        (400, AttemptVerdict.PERMANENT, "4xx"),
        (401, AttemptVerdict.PERMANENT, "4xx"),
        (404, AttemptVerdict.PERMANENT, "4xx"),
        (408, AttemptVerdict.RETRY, "408"),
        (429, AttemptVerdict.RETRY, "429"),
        (500, AttemptVerdict.RETRY, "5xx"),
        (503, AttemptVerdict.RETRY, "5xx"),
    ],
)
def test_classify_response(status: int, verdict: AttemptVerdict, label: str) -> None:
    outcome = delivery.classify_response(status, "Why", b"", None, NOW)
    assert (outcome.verdict, outcome.label, outcome.status_code) == (verdict, label, status)


def test_error_text_keeps_the_start_of_the_body_and_retry_after() -> None:
    outcome = delivery.classify_response(503, "Service Unavailable", b"x" * 500, "12", NOW)
    assert outcome.error == "HTTP 503 Service Unavailable: " + "x" * delivery.REASON_CAP
    assert outcome.retry_after == 12.0


async def _attempt(
    handler: httpx.MockTransport, time_limit: float = 1.0
) -> delivery.AttemptOutcome:
    request = delivery.build_request(target(), EVENT, attempt=1, now=0)
    return await delivery.attempt(handler, request, time_limit)


async def test_attempt_delivered_and_failed_responses() -> None:
    ok = await _attempt(httpx.MockTransport(lambda r: httpx.Response(200, text="OK")))
    assert ok.verdict is AttemptVerdict.DELIVERED
    assert ok.latency >= 0
    busy = await _attempt(
        httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "9"}))
    )
    assert (busy.verdict, busy.retry_after, busy.error) == (
        AttemptVerdict.RETRY,
        9.0,
        "HTTP 429 Too Many Requests",
    )
    gone = await _attempt(httpx.MockTransport(lambda r: httpx.Response(410, text="gone")))
    assert (gone.verdict, gone.error) == (AttemptVerdict.PERMANENT, "HTTP 410 Gone: gone")


async def test_attempt_network_errors_are_retried() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)

    refused = await _attempt(httpx.MockTransport(refuse))
    assert (refused.verdict, refused.label) == (AttemptVerdict.RETRY, "connect")
    assert "Connection refused" in refused.error
    timed_out = await _attempt(httpx.MockTransport(read_timeout))
    assert (timed_out.verdict, timed_out.label) == (AttemptVerdict.RETRY, "timeout")
    assert timed_out.error == "no response within 1s (ReadTimeout)"
    other = await _attempt(httpx.MockTransport(broken))
    assert (other.verdict, other.label) == (AttemptVerdict.RETRY, "error")


async def test_the_whole_exchange_is_bounded() -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    outcome = await _attempt(httpx.MockTransport(stall), time_limit=0.05)
    assert (outcome.verdict, outcome.label) == (AttemptVerdict.RETRY, "timeout")
    assert outcome.error == "no response within 0.05s"


async def test_only_the_start_of_a_long_answer_is_read() -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            sent.append(4096)
            yield b"x" * 4096

    outcome = await _attempt(httpx.MockTransport(lambda r: httpx.Response(500, content=endless())))
    assert (outcome.verdict, outcome.label) == (AttemptVerdict.RETRY, "5xx")
    assert outcome.error == "HTTP 500 Internal Server Error: " + "x" * delivery.REASON_CAP
    assert sum(sent) <= delivery.BODY_CAP + 4096


class _SlowToClose(httpx.AsyncByteStream):
    """A complete answer whose close takes a while, as httpcore's does when it waits for
    the connection's lock: the close must finish, or the connection stays busy for good."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"OK"

    async def aclose(self) -> None:
        await asyncio.sleep(self.pause)  # the time limit runs out in here
        self.closed = True


async def test_the_time_limit_never_cuts_the_close_of_an_answer_short() -> None:
    # A single-connection pool whose close was cancelled half-way kept its connection
    # marked busy: every later attempt on it timed out waiting for the pool, forever.
    stream = _SlowToClose(pause=0.1)
    answered = httpx.MockTransport(lambda r: httpx.Response(200, stream=stream))
    outcome = await _attempt(answered, time_limit=0.05)
    assert stream.closed
    assert (outcome.verdict, outcome.label) == (AttemptVerdict.DELIVERED, "2xx")


async def test_a_failing_close_does_not_change_the_verdict() -> None:
    class BrokenClose(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"OK"

        async def aclose(self) -> None:
            raise httpx.ReadError("connection reset while closing")

    answered = httpx.MockTransport(lambda r: httpx.Response(200, stream=BrokenClose()))
    outcome = await _attempt(answered)
    assert (outcome.verdict, outcome.label) == (AttemptVerdict.DELIVERED, "2xx")
