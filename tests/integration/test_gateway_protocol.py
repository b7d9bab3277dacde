"""The lean `/sendsms` protocol on a real server, against uvicorn's own on the same bus.

Each request goes over a socket to two servers of the same app: one with the lean
protocol (what `smsgate api` and `smsgate dev` run), one with uvicorn's httptools
protocol and the ASGI endpoint (what they ran before). The answers must be the same
bytes, but for the date, the report's times and the caller ids that tell them apart.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator

import httpx
import pytest
from smsgate.config import NatsConfig
from smsgate.embedded import free_port
from smsgate_api.gateway_protocol import GatewayProtocol

from tests.conftest import Bus
from tests.integration.api_fixtures import PASSWORD, ServerThread, api_config, serving

CREDS = f"username=smsuser&password={PASSWORD}".encode()
_DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")
_TIME = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture
def lean(nats_bus: Bus) -> Iterator[ServerThread]:
    with serving(api_config(nats_bus.config)) as running:
        assert issubclass(running.server.config.http_protocol_class, GatewayProtocol)
        yield running


@pytest.fixture
def uvicorns(nats_bus: Bus) -> Iterator[ServerThread]:
    with serving(api_config(nats_bus.config), http="httptools") as running:
        yield running


async def exchange(server: ServerThread, data: bytes, answers: int = 1) -> list[bytes]:
    """Write `data` (in one write) and read `answers` responses, whole."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        return [await read_response(reader) for _ in range(answers)]
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = re.search(rb"\r\ncontent-length: (\d+)\r\n", head, re.IGNORECASE)
    assert length is not None, head
    return head + await reader.readexactly(int(length.group(1)))


def same_form(answer: bytes, tag: bytes = b"") -> bytes:
    """The answer without what differs between two servers: date, times, the ids' tag."""
    answer = _TIME.sub(b"T", _DATE.sub(b"\r\ndate: D\r\n", answer))
    return answer.replace(tag, b"TAGx") if tag else answer


def get(query: bytes, version: bytes = b"1.1", headers: bytes = b"") -> bytes:
    return b"GET /sendsms?%s HTTP/%s\r\nHost: gw\r\n%s\r\n" % (query, version, headers)


def post(body: bytes, content_type: bytes = b"application/x-www-form-urlencoded") -> bytes:
    return (
        b"POST /sendsms?report=String HTTP/1.1\r\nHost: gw\r\nContent-Type: %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (content_type, len(body), body)
    )


AUTHORIZATION = b"Authorization: Basic %s\r\n" % base64.b64encode(f"smsuser:{PASSWORD}".encode())
CLOSE = b"Connection: close\r\n"
REQUESTS = {
    "json": get(CREDS + b"&phonenumber=10086,10010&message=hello&id=TAGx-1"),
    "string": get(CREDS + b"&phonenumber=10086&message=h%C3%A9&report=string&id=TAGx-2"),
    "no report": get(CREDS + b"&phonenumber=10086&message=x&report=NO&id=TAGx-3"),
    "no report, an error": get(CREDS + b"&phonenumber=abc&message=x&report=NO"),
    "wrong password": get(b"username=smsuser&password=nope&phonenumber=10086&message=x"),
    "no credentials": get(b"phonenumber=10086&message=x&report=String"),
    "bad number": get(CREDS + b"&phonenumber=12&message=x"),
    "unknown report": get(CREDS + b"&phonenumber=10086&message=x&report=xml"),
    "bad utf-8": get(CREDS + b"&phonenumber=10086&message=%FF"),
    "basic auth": get(b"phonenumber=10086&message=x&id=TAGx-4", headers=AUTHORIZATION),
    "post form": post(CREDS + b"&phonenumber=10086&message=posted&id=TAGx-5"),
    "post json": post(b'{"to": "10086"}', b"application/json"),
    "connection close": get(CREDS + b"&phonenumber=10086&message=x&id=TAGx-6", headers=CLOSE),
    "http/1.0": get(CREDS + b"&phonenumber=10086&message=x&id=TAGx-7", version=b"1.0"),
    "too large": b"POST /sendsms HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",
}  # fmt: skip


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_answers_are_uvicorns_byte_for_byte(
    lean: ServerThread, uvicorns: ServerThread, name: str
) -> None:
    request = REQUESTS[name]
    [ours] = await exchange(lean, request.replace(b"TAGx", b"lean"))
    [theirs] = await exchange(uvicorns, request.replace(b"TAGx", b"uvic"))
    assert same_form(ours, b"lean") == same_form(theirs, b"uvic")
    assert ours.startswith(b"HTTP/1.1 ")


async def test_nats_away_is_503_with_retry_after_as_before(nats_config: NatsConfig) -> None:
    away = NatsConfig(url=f"nats://127.0.0.1:{free_port()}")
    answers = []
    for uvicorns in (False, True):
        server = (
            ServerThread(api_config(away), http="httptools")
            if uvicorns
            else ServerThread(api_config(away))
        )
        server._thread.start()  # not ready: it cannot reach NATS, and that is the point
        for _ in range(1000):
            if server.server.started:
                break
            await asyncio.sleep(0.01)
        try:
            [answer] = await exchange(server, get(CREDS + b"&phonenumber=10086&message=x"))
        finally:
            server.stop()
        answers.append(same_form(answer))
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 5\r\n" in answers[0]


async def test_pipelined_requests_are_answered_in_order(lean: ServerThread) -> None:
    requests = b"".join(
        get(CREDS + b"&phonenumber=10086&message=x&id=pipe-%d" % i) for i in range(5)
    )
    answers = await exchange(lean, requests, answers=5)
    ids = [re.search(rb'"id":"([^"]+)"', answer).group(1) for answer in answers]  # type: ignore[union-attr]
    assert ids == [b"pipe-%d" % i for i in range(5)]


async def test_a_request_split_over_many_reads(lean: ServerThread) -> None:
    request = post(CREDS + b"&phonenumber=10086&message=in+pieces&id=split-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.port)
    try:
        for index in range(len(request)):
            writer.write(request[index : index + 1])
            await writer.drain()
            if index % 16 == 0:
                await asyncio.sleep(0.001)  # let the server read what came so far
        answer = await read_response(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"message:in pieces\n" in answer
    assert b"id: split-1\n" in answer


async def test_other_requests_on_the_connection_go_to_the_app(lean: ServerThread) -> None:
    requests = (
        get(CREDS + b"&phonenumber=10086&message=x&id=mixed-1")
        + b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
        + get(CREDS + b"&phonenumber=10086&message=x&id=mixed-2")
    )
    first, health, last = await exchange(lean, requests, answers=3)
    assert b'"id":"mixed-1"' in first
    assert health.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'\r\n\r\n{"status":"ok",' in health
    assert b'"id":"mixed-2"' in last


async def test_an_oversized_head_is_answered_as_uvicorn_answers_it(
    lean: ServerThread, uvicorns: ServerThread
) -> None:
    request = get(CREDS + b"&phonenumber=10086&message=" + b"x" * 70_000)
    [ours] = await exchange(lean, request)
    [theirs] = await exchange(uvicorns, request)
    assert same_form(ours) == same_form(theirs)
    assert ours.startswith(b"HTTP/1.1 400 ")  # llhttp refuses a head this long


async def test_http_1_0_is_answered_then_closed(lean: ServerThread) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.port)
    try:
        writer.write(get(CREDS + b"&phonenumber=10086&message=x", version=b"1.0") * 2)
        await writer.drain()
        answer = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in answer
    assert rest == b""  # closed: the second request is not answered


async def test_keep_alive_serves_many_then_times_out(nats_bus: Bus) -> None:
    with serving(api_config(nats_bus.config), timeout_keep_alive=0.3) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            for index in range(3):
                writer.write(get(CREDS + b"&phonenumber=10086&message=x&id=ka-%d" % index))
                answer = await read_response(reader)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"connection: close" not in answer
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed when idle
        finally:
            writer.close()


async def test_metrics_count_lean_requests(lean: ServerThread) -> None:
    await exchange(lean, get(CREDS + b"&phonenumber=10086&message=x"))
    await exchange(lean, get(b"username=smsuser&password=nope&phonenumber=10086&message=x"))
    async with httpx.AsyncClient(base_url=lean.url) as client:
        text = (await client.get("/metrics")).text
    assert 'smsgate_api_requests_total{route="/sendsms",outcome="ok"} 1' in text
    assert 'smsgate_api_requests_total{route="/sendsms",outcome="rejected"} 1' in text


@pytest.mark.parametrize("uvicorns", [False, True], ids=["lean", "uvicorn's"])
async def test_a_stopping_server_answers_the_request_in_flight_then_closes(
    nats_bus: Bus, uvicorns: bool
) -> None:
    config = api_config(nats_bus.config)
    server = ServerThread(config, http="httptools") if uvicorns else ServerThread(config)
    server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # No agent answers: the request waits its whole timeout, and the server stops meanwhile.
        writer.write(get(CREDS + b"&phonenumber=10086&message=x&timeout=1&id=stopping-1"))
        await writer.drain()
        await asyncio.sleep(0.3)
        server.server.should_exit = True
        answer = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"id":"stopping-1"' in answer
    assert b"\r\nconnection: close\r\n" in answer  # as uvicorn says it when stopping
    assert rest == b""
