"""`/api/v1`, health, metrics and the OpenAPI document against a real nats-server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from nats.aio.msg import Msg
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate.contracts import ControlReply, PortCommand, PortStatus, UssdRequest
from smsgate.embedded import EmbeddedNats
from smsgate_api import create_app

from tests.conftest import Bus
from tests.integration.api_fixtures import (
    ADMIN_TOKEN,
    LIMITED_TOKEN,
    TOKEN,
    AgentStandIn,
    Api,
    api_config,
    decode_json,
    port_state,
    running_agent,
    running_api,
)

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(nats_bus: Bus) -> AsyncIterator[Api]:
    async with running_api(nats_bus, api_config(nats_bus.config)) as running:
        yield running


@pytest.fixture
async def agent(nats_bus: Bus) -> AsyncIterator[AgentStandIn]:
    async with running_agent(nats_bus) as stand_in:
        yield stand_in


async def test_send_and_read_status(api: Api, agent: AgentStandIn) -> None:
    response = await api.client.post(
        "/api/v1/messages",
        json={"to": ["+4915550100"], "text": "hi", "id": "v1-a", "wait": 30},
        headers=BEARER,
    )
    assert response.status_code == 202
    [message] = decode_json(response.content)["messages"]
    assert message["id"] == "v1-a"
    assert message["state"] == "sent"
    assert message["port"] == "lte-1"
    assert message["port_number"] == 1
    status = await api.client.get("/api/v1/messages/v1-a", headers=BEARER)
    assert status.status_code == 200
    body = decode_json(status.content)
    assert body["state"] == "sent"
    assert body["parts"] == [{"sequence": 1, "reference": 7, "error": None}]
    assert body["user"] == "smsuser"


async def test_an_unknown_outcome_reads_unknown(api: Api, agent: AgentStandIn) -> None:
    agent.decide = lambda job: (contracts.SendStatus.UNKNOWN, "outcome unknown: no answer")
    response = await api.client.post(
        "/api/v1/messages",
        json={"to": ["+4915550100"], "text": "hi", "id": "v1-u", "wait": 30},
        headers=BEARER,
    )
    assert response.status_code == 202
    [message] = decode_json(response.content)["messages"]
    assert (message["state"], message["reason"]) == ("unknown", "outcome unknown: no answer")
    status = await api.client.get("/api/v1/messages/v1-u", headers=BEARER)
    assert decode_json(status.content)["state"] == "unknown"


async def test_send_without_wait_is_queued(api: Api) -> None:
    await api.set_ports(port_state("lte-1"), port_state("lte-2"))
    response = await api.client.post(
        "/api/v1/messages",
        json={"to": ["10086", "10087"], "text": "hi", "port": ["lte-2"], "delivery_report": False},
        headers=BEARER,
    )
    assert response.status_code == 202
    messages = decode_json(response.content)["messages"]
    assert [m["state"] for m in messages] == ["queued", "queued"]
    assert {m["port"] for m in messages} == {"lte-2"}
    jobs = [job for _, job in await api.jobs()]
    assert [j.status_report for j in jobs] == [False, False]


async def test_repeat_is_flagged(api: Api) -> None:
    body = {"to": ["10086"], "text": "hi", "id": "rep"}
    await api.client.post("/api/v1/messages", json=body, headers=BEARER)
    again = await api.client.post("/api/v1/messages", json=body, headers=BEARER)
    [message] = decode_json(again.content)["messages"]
    assert message["repeat"] is True
    assert message["state"] == "queued"
    assert len(await api.jobs()) == 1


async def test_basic_auth_also_works(api: Api) -> None:
    creds = base64.b64encode(b"limited:limitedpw").decode()
    response = await api.client.get("/api/v1/ports", headers={"Authorization": f"Basic {creds}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"to": [], "text": "hi"}, "$.to"),
        ({"to": ["12x"], "text": "hi"}, "$.to[0]"),
        ({"to": ["10086"], "text": ""}, "$.text"),
        ({"to": ["10086"], "text": "hi", "colour": "red"}, "unknown field"),
        ({"to": ["10086"], "text": "x" * 1600}, "needs 11 SMS parts"),
    ],
)
async def test_bad_bodies(api: Api, body: object, fragment: str) -> None:
    response = await api.client.post("/api/v1/messages", json=body, headers=BEARER)
    assert response.status_code == 400
    error = decode_json(response.content)
    assert error["error"] == "bad_parameter"
    assert fragment in error["message"]


async def test_not_json(api: Api) -> None:
    response = await api.client.post("/api/v1/messages", content=b"{", headers=BEARER)
    assert response.status_code == 400
    assert "not valid JSON" in decode_json(response.content)["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Digest x"}]
)
async def test_credentials_required(api: Api, headers: dict[str, str]) -> None:
    response = await api.client.get("/api/v1/ports", headers=headers)
    assert response.status_code == 401
    assert decode_json(response.content)["error"] == "unauthorized"


async def test_other_users_messages_are_not_found(api: Api) -> None:
    await api.client.post(
        "/api/v1/messages", json={"to": ["10086"], "text": "hi", "id": "mine"}, headers=BEARER
    )
    other = await api.client.get(
        "/api/v1/messages/mine", headers={"Authorization": f"Bearer {LIMITED_TOKEN}"}
    )
    assert other.status_code == 404
    admin = await api.client.get(
        "/api/v1/messages/mine", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert admin.status_code == 200
    missing = await api.client.get("/api/v1/messages/nope", headers=BEARER)
    assert missing.status_code == 404


async def test_ports_are_live_and_filtered(api: Api) -> None:
    old = contracts.utcnow().replace(year=2020)
    await api.set_ports(
        port_state("lte-1"), port_state("lte-2", updated=old), port_state("lte-3", PortStatus.BUSY)
    )
    everything = decode_json((await api.client.get("/api/v1/ports", headers=BEARER)).content)
    assert [(p["port"], p["status"]) for p in everything["ports"]] == [
        ("lte-1", "ready"),
        ("lte-2", "down"),  # no heartbeat for 3 intervals
        ("lte-3", "busy"),
    ]
    limited = await api.client.get(
        "/api/v1/ports", headers={"Authorization": f"Bearer {LIMITED_TOKEN}"}
    )
    assert [p["port"] for p in decode_json(limited.content)["ports"]] == ["lte-1", "lte-2"]


async def _responder(bus: Bus, subject: str, reply: ControlReply, seen: list[bytes]) -> None:
    async def answer(msg: Msg) -> None:
        seen.append(msg.data)
        await msg.respond(contracts.encode(reply))

    await bus.nc.subscribe(subject, cb=answer)


async def test_port_control(api: Api) -> None:
    await api.set_ports(port_state("lte-3"))
    seen: list[bytes] = []
    state = port_state("lte-3", PortStatus.DISABLED)
    await _responder(
        api.bus, subjects.port_control("lte-3"), ControlReply(ok=True, state=state), seen
    )
    response = await api.client.post("/api/v1/ports/lte-3/disable", headers=BEARER)
    assert response.status_code == 200
    assert decode_json(response.content)["state"]["status"] == "disabled"
    assert contracts.decode(seen[0], PortCommand).action == "disable"
    # a number works too
    assert (await api.client.post("/api/v1/ports/3/drain", headers=BEARER)).status_code == 200


async def test_port_control_errors(api: Api) -> None:
    await api.set_ports(port_state("lte-1"), port_state("lte-3"))
    no_agent = await api.client.post("/api/v1/ports/lte-1/enable", headers=BEARER)
    assert no_agent.status_code == 503
    assert "no agent answers" in decode_json(no_agent.content)["message"]
    unknown = await api.client.post("/api/v1/ports/lte-9/enable", headers=BEARER)
    assert unknown.status_code == 404
    action = await api.client.post("/api/v1/ports/lte-1/explode", headers=BEARER)
    assert action.status_code == 404
    limited = {"Authorization": f"Bearer {LIMITED_TOKEN}"}
    forbidden = await api.client.post("/api/v1/ports/lte-3/disable", headers=limited)
    assert forbidden.status_code == 403
    seen: list[bytes] = []
    refused = ControlReply(ok=False, error="port is busy")
    await _responder(api.bus, subjects.port_control("lte-1"), refused, seen)
    conflict = await api.client.post("/api/v1/ports/lte-1/enable", headers=BEARER)
    assert conflict.status_code == 409
    assert decode_json(conflict.content)["error"] == "port is busy"


async def test_ussd(api: Api) -> None:
    await api.set_ports(port_state("lte-2"))
    seen: list[bytes] = []
    answer = ControlReply(ok=True, text="Balance 21.19")
    await _responder(api.bus, subjects.ussd("lte-2"), answer, seen)
    response = await api.client.post(
        "/api/v1/ussd", json={"port": "lte-2", "code": "*100#"}, headers=BEARER
    )
    assert response.status_code == 200
    assert decode_json(response.content)["text"] == "Balance 21.19"
    assert contracts.decode(seen[0], UssdRequest).code == "*100#"


@pytest.mark.parametrize("code", ["abc", "*100#; AT+CFUN=0", "", "1" * 161])
async def test_ussd_with_an_invalid_code_is_a_bad_request(api: Api, code: str) -> None:
    await api.set_ports(port_state("lte-2"))
    seen: list[bytes] = []
    await _responder(api.bus, subjects.ussd("lte-2"), ControlReply(ok=False, error="no"), seen)
    response = await api.client.post(
        "/api/v1/ussd", json={"port": "lte-2", "code": code}, headers=BEARER
    )
    assert response.status_code == 400
    body = decode_json(response.content)
    assert body["error"] == "bad_parameter"
    assert "USSD code" in body["message"] if code else "code" in body["message"]
    assert seen == []  # never asked of the agent


async def test_ports_during_a_nats_outage_are_unknown(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    await server.astart()
    try:
        config = api_config(NatsConfig(url=server.url))
        app = create_app(config)
        async with app.router.lifespan_context(app):
            rt = app.runtime
            async with asyncio.timeout(30):
                while not rt.connected:  # noqa: ASYNC110 - the runtime connects by itself
                    await asyncio.sleep(0.05)
            assert rt.nc is not None
            kv = await rt.nc.jetstream().key_value(subjects.PORTS_BUCKET)
            await kv.put("lte-1", contracts.encode(port_state("lte-1")))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                async with asyncio.timeout(30):
                    while rt.ports.state("lte-1") is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                seen = decode_json((await client.get("/api/v1/ports", headers=BEARER)).content)
                assert (seen["bus"], seen["ports"][0]["status"]) == ("connected", "ready")
                await server.astop()
                async with asyncio.timeout(30):
                    while rt.connected:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                response = await client.get("/api/v1/ports", headers=BEARER)
                seen = decode_json(response.content)
                assert response.status_code == 200
                assert seen["bus"] == "unreachable"
                assert [p["status"] for p in seen["ports"]] == ["unknown"]
                assert seen["ports"][0]["port"] == "lte-1"  # the rest is as last seen
    finally:
        await server.astop()


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert decode_json(ready.content) == {"status": "ready", "nats": True, "streams": True}


async def test_metrics(api: Api) -> None:
    await api.set_ports(port_state("lte-1"), port_state("lte-2", PortStatus.BUSY))
    await api.client.get("/sendsms?username=smsuser&password=smspwd&phonenumber=10086&message=x")
    await api.client.get("/sendsms?username=smsuser&password=bad&phonenumber=10086&message=x")
    text = (await api.client.get("/metrics")).text
    assert 'smsgate_api_requests_total{route="/sendsms",outcome="ok"} 1' in text
    assert 'smsgate_api_requests_total{route="/sendsms",outcome="rejected"} 1' in text
    assert 'smsgate_api_request_duration_seconds_count{route="/sendsms"} 2' in text
    assert 'smsgate_api_messages_total{outcome="queued"} 1' in text
    assert "smsgate_send_queue_depth 1" in text
    assert 'smsgate_ports{status="ready"} 1' in text
    assert 'smsgate_ports{status="busy"} 1' in text


async def test_openapi_lists_every_route(api: Api) -> None:
    spec = decode_json((await api.client.get("/openapi.json")).content)
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    app_routes = {
        (method, route.path)  # type: ignore[attr-defined]
        for route in api.app.routes
        for method in (route.methods or ())  # type: ignore[attr-defined]
        if method != "HEAD"
    }
    assert routes == app_routes
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "/api/v1/messages" in docs.text


async def test_cors_switch(nats_bus: Bus) -> None:
    async with running_api(nats_bus, api_config(nats_bus.config, cors=True)) as api:
        response = await api.client.options(
            "/sendsms",
            headers={"Origin": "http://app.example", "Access-Control-Request-Method": "GET"},
        )
        assert response.headers["access-control-allow-origin"] == "*"
    async with running_api(nats_bus, api_config(nats_bus.config)) as api:
        response = await api.client.get("/healthz", headers={"Origin": "http://app.example"})
        assert "access-control-allow-origin" not in response.headers


async def test_http_sending_off_applies_to_v1(nats_bus: Bus) -> None:
    async with running_api(nats_bus, api_config(nats_bus.config, http_to_sms=False)) as api:
        response = await api.client.post(
            "/api/v1/messages", json={"to": ["10086"], "text": "hi"}, headers=BEARER
        )
        assert response.status_code == 403


async def test_queue_full_on_v1(api: Api) -> None:
    await bus.provision(api.bus.js, msgspec.structs.replace(api.bus.config, send_max_msgs=1))
    response = await api.client.post(
        "/api/v1/messages", json={"to": ["10086", "10087"], "text": "hi"}, headers=BEARER
    )
    assert response.status_code == 503
    assert decode_json(response.content)["error"] == "busy"
    assert await api.jobs() == []
