"""The API on a real uvicorn server: the wire, the access log, proxies, TLS and SSE."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from smsgate import contracts, subjects
from smsgate.contracts import InboundSms, SendResult, SendStatus

from tests.conftest import Bus
from tests.integration.api_fixtures import (
    PASSWORD,
    TOKEN,
    AgentStandIn,
    ServerThread,
    api_config,
    decode_json,
    port_state,
    running_agent,
    serving,
)

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(nats_bus: Bus) -> Iterator[ServerThread]:
    with serving(api_config(nats_bus.config)) as running:
        yield running


@pytest.fixture
async def agent(nats_bus: Bus) -> AsyncIterator[AgentStandIn]:
    async with running_agent(nats_bus) as stand_in:
        yield stand_in


async def test_gateway_over_http_and_the_access_log_is_redacted(
    server: ServerThread, agent: AgentStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smsgate.access")
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get(
            "/sendsms?username=smsuser&password=smspwd&phoneNumber=10086"
            "&timeout=60&id=39fd7439&message=ye"
        )
    assert response.status_code == 200
    record = decode_json(response.content)["report"]["0"]
    assert (record["id"], record["result"], record["port"]) == ("39fd7439", "sent", "1")

    def access() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "smsgate.access"]

    # The writer thread writes the line a moment later, off the event loop.
    for _ in range(500):  # polls state; the assertions below say what must hold
        if any("GET /sendsms" in line for line in access()):
            break
        await asyncio.sleep(0.01)
    access_lines = access()
    assert any("GET /sendsms?username=***&password=***" in line for line in access_lines)
    assert any("id=39fd7439" in line and "timeout=60" in line for line in access_lines)
    assert PASSWORD not in caplog.text
    assert "10086" not in caplog.text


async def test_throttling_follows_the_forwarded_client(server: ServerThread) -> None:
    bad = "/sendsms?username=smsuser&password=wrong&phonenumber=10086&message=x"
    good = f"/sendsms?username=smsuser&password={PASSWORD}&phonenumber=10086&message=x"
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(5):
            response = await client.get(bad, headers={"X-Forwarded-For": "10.0.0.1"})
            assert response.status_code == 401
        blocked = await client.get(good, headers={"X-Forwarded-For": "10.0.0.1"})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        other = await client.get(good, headers={"X-Forwarded-For": "10.0.0.2"})
        assert other.status_code == 200


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_with_cert_and_key(nats_bus: Bus, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    config = api_config(nats_bus.config, tls_cert=str(cert), tls_key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    server = ServerThread(config, verify=context)
    server.start()
    try:
        assert server.url.startswith("https://")
        response = httpx.get(f"{server.url}/healthz", verify=context)
        assert response.status_code == 200
        # /sendsms through the lean protocol (gateway_protocol.py) over TLS too
        sent = httpx.get(
            f"{server.url}/sendsms?username=smsuser&password={PASSWORD}"
            "&phonenumber=10086&message=tls&id=tls-1",
            verify=context,
        )
        assert sent.status_code == 200
        assert decode_json(sent.content)["report"]["0"]["id"] == "tls-1"
    finally:
        server.stop()


# --- Server-Sent Events --------------------------------------------------------------------


def _result(port: str, message_id: str) -> SendResult:
    return SendResult(
        event_id=contracts.new_id(),
        port=port,
        port_number=subjects.port_number(port),
        time=contracts.utcnow(),
        id=message_id,
        to="10086",
        status=SendStatus.SENT,
    )


def _inbound(port: str) -> InboundSms:
    now = contracts.utcnow()
    return InboundSms(
        event_id=contracts.new_id(),
        port=port,
        time=now,
        id=contracts.new_id(),
        sender="10086",
        text="hello",
        smsc_time=now,
    )


async def _read_events(lines: AsyncIterator[str], count: int) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async for line in lines:
        if not line:
            if current:
                events.append(current)
                current = {}
            if len(events) == count:
                return events
            continue
        if line.startswith((":", "retry:")):
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    raise AssertionError("the stream ended early")


async def _until_connected(lines: AsyncIterator[str]) -> None:
    async for line in lines:
        if line == ": connected":
            return


async def test_events_stream_filters_and_resumes(nats_bus: Bus) -> None:
    for name in ("lte-1", "lte-2"):
        await nats_bus.buckets.ports.put(name, contracts.encode(port_state(name)))
    with serving(api_config(nats_bus.config)) as server:
        await _stream_and_resume(server, nats_bus)


async def _stream_and_resume(server: ServerThread, nats_bus: Bus) -> None:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/api/v1/events?type=result&port=1", headers=BEARER) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        await _until_connected(lines)
        await nats_bus.js.publish(
            subjects.event("inbound", "lte-1"), contracts.encode(_inbound("lte-1"))
        )
        await nats_bus.js.publish(
            subjects.event("result", "lte-2"), contracts.encode(_result("lte-2", "b"))
        )
        first = await nats_bus.js.publish(
            subjects.event("result", "lte-1"), contracts.encode(_result("lte-1", "a1"))
        )
        second = await nats_bus.js.publish(
            subjects.event("result", "lte-1"), contracts.encode(_result("lte-1", "a2"))
        )
        events = await _read_events(lines, 2)
    assert [e["event"] for e in events] == ["result", "result"]
    assert [int(e["id"]) for e in events] == [first.seq, second.seq]
    assert [decode_json(e["data"])["id"] for e in events] == ["a1", "a2"]

    # Resume after the first: the second is replayed.
    headers = BEARER | {"Last-Event-ID": str(first.seq)}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/api/v1/events?type=result&port=lte-1", headers=headers) as response,
    ):
        [replayed] = await _read_events(response.aiter_lines(), 1)
    assert int(replayed["id"]) == second.seq


async def test_events_bad_requests(server: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        kind = await client.get("/api/v1/events?type=weather", headers=BEARER)
        assert kind.status_code == 400
        since = await client.get("/api/v1/events?since=x", headers=BEARER)
        assert since.status_code == 400
        anonymous = await client.get("/api/v1/events")
        assert anonymous.status_code == 401
