"""The console's HTTP side against a real nats-server: page, sessions, settings, live stream."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from smsgate import contracts, subjects
from smsgate.contracts import InboundSms, PortStatus

from tests.conftest import Bus
from tests.integration.api_fixtures import (
    PASSWORD,
    Api,
    api_config,
    decode_json,
    port_state,
    running_api,
    serving,
)

LOGIN = {"username": "smsuser", "password": PASSWORD}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def api(nats_bus: Bus) -> AsyncIterator[Api]:
    async with running_api(nats_bus, api_config(nats_bus.config)) as running:
        yield running


async def test_the_page_and_its_assets(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert '<script type="module" src="/console/app.js">' in page.text
    for asset in ("app.js", "api.js", "store.js", "ports.js", "segments.js", "style.css"):
        response = await api.client.get(f"/console/{asset}")
        assert response.status_code == 200, asset
    assert (
        (await api.client.get("/console/app.js"))
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert (await api.client.get("/console/nothing.js")).status_code == 404


async def test_log_in_use_the_api_with_the_cookie_and_log_out(api: Api) -> None:
    await api.set_ports(port_state("lte-1"))
    anonymous = await api.client.get("/api/v1/session")
    assert anonymous.status_code == 401
    assert "www-authenticate" not in anonymous.headers  # no browser dialog over the form

    wrong = await api.client.post("/api/v1/session", json={**LOGIN, "password": "nope"})
    assert wrong.status_code == 401
    assert "smsgate_session" not in api.client.cookies

    login = await api.client.post("/api/v1/session", json=LOGIN)
    assert login.status_code == 200
    session = decode_json(login.content)
    assert session["user"] == "smsuser"
    assert session["via"] == "session"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie

    who = decode_json((await api.client.get("/api/v1/session")).content)
    assert who["csrf"] == session["csrf"]
    ports = await api.client.get("/api/v1/ports")
    assert ports.status_code == 200
    assert [p["port"] for p in decode_json(ports.content)["ports"]] == ["lte-1"]

    # Changes need the CSRF token as well as the cookie.
    refused = await api.client.post("/api/v1/messages", json={"to": ["10086"], "text": "hi"})
    assert refused.status_code == 403
    assert decode_json(refused.content)["error"] == "csrf"
    wrong_token = await api.client.post(
        "/api/v1/messages", json={"to": ["10086"], "text": "hi"}, headers={"X-CSRF-Token": "x"}
    )
    assert wrong_token.status_code == 403
    sent = await api.client.post(
        "/api/v1/messages",
        json={"to": ["10086"], "text": "hi"},
        headers={"X-CSRF-Token": session["csrf"]},
    )
    assert sent.status_code == 202

    out = await api.client.delete("/api/v1/session")
    assert out.status_code == 204
    assert "smsgate_session" not in api.client.cookies
    assert (await api.client.get("/api/v1/ports")).status_code == 401


async def test_a_form_login_works_and_a_foreign_page_cannot_log_in(api: Api) -> None:
    form = await api.client.post(
        "/api/v1/session",
        content=f"username=smsuser&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200
    foreign = await api.client.post(
        "/api/v1/session", json=LOGIN, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    own = await api.client.post("/api/v1/session", json=LOGIN, headers={"Origin": "http://gateway"})
    assert own.status_code == 200
    huge = await api.client.post("/api/v1/session", content=b"username=" + b"x" * 100_000)
    assert huge.status_code == 413


async def test_a_bad_cookie_asks_for_a_new_login_but_a_header_still_works(api: Api) -> None:
    api.client.cookies.set("smsgate_session", "forged.cookie")
    response = await api.client.get("/api/v1/ports")
    assert response.status_code == 401
    assert decode_json(response.content)["error"] == "session_expired"
    assert "www-authenticate" not in response.headers
    with_header = await api.client.get("/api/v1/ports", headers=basic("smsuser", PASSWORD))
    assert with_header.status_code == 200


async def test_basic_is_enough_for_the_console(api: Api) -> None:
    who = await api.client.get("/api/v1/session", headers=basic("limited", "limitedpw"))
    assert who.status_code == 200
    body = decode_json(who.content)
    assert body["via"] == "header"
    assert body["ports"] == ["lte-1", "lte-2"]
    assert body["csrf"] is None


async def test_settings_need_a_user_and_hide_the_others_from_non_admins(api: Api) -> None:
    assert (await api.client.get("/api/v1/settings")).status_code == 401
    limited = decode_json(
        (await api.client.get("/api/v1/settings", headers=basic("limited", "limitedpw"))).content
    )
    assert [u["name"] for u in limited["users"]] == ["limited"]
    assert limited["users_hidden"] == 3
    admin = await api.client.get("/api/v1/settings", headers=basic("admin", "adminpw"))
    text = admin.text
    assert [u["name"] for u in decode_json(admin.content)["users"]] == [
        "smsuser",
        "limited",
        "nodr",
        "admin",
    ]
    assert "scrypt" not in text
    assert "adminpw" not in text
    assert "tok-" not in text
    assert decode_json(admin.content)["http_to_sms"]["enabled"] is True


async def _sse(lines: AsyncIterator[str], wanted: set[str]) -> dict[str, list[object]]:
    """Read events until every kind in `wanted` has come, and return them by kind."""
    seen: dict[str, list[object]] = {}
    kind = None
    async for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind is not None:
            seen.setdefault(kind, []).append(msgspec.json.decode(line[6:]))
            if wanted <= seen.keys():
                return seen
    raise AssertionError(f"the stream ended; got only {sorted(seen)}")


async def test_the_live_stream_sends_health_ports_and_traffic(nats_bus: Bus) -> None:
    config = api_config(nats_bus.config)
    now = contracts.utcnow()
    await nats_bus.buckets.ports.put("lte-1", contracts.encode(port_state("lte-1")))
    await nats_bus.buckets.ports.put("lte-3", contracts.encode(port_state("lte-3")))
    inbound = InboundSms(
        event_id="in-1", port="lte-1", time=now, id="in-1", sender="+1555", text="hi", smsc_time=now
    )
    await nats_bus.js.publish(subjects.event("inbound", "lte-1"), contracts.encode(inbound))
    with serving(config) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            client.stream(
                "GET", "/api/v1/console/stream", headers=basic("limited", "limitedpw")
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            async with asyncio.timeout(10):
                first = await _sse(lines, {"health", "ports", "traffic"})
                [health] = first["health"]
                assert health == {"nats": True, "queue": 0, "events_seq": 1}
                [ports] = first["ports"]
                assert isinstance(ports, dict)
                assert ports["full"] is True
                assert [p["port"] for p in ports["ports"]] == ["lte-1"]  # lte-3: not theirs
                # A change shows up on its own, without a request.
                disabled = port_state("lte-1", PortStatus.DISABLED)
                await nats_bus.buckets.ports.put("lte-1", contracts.encode(disabled))
                while True:
                    update = (await _sse(lines, {"ports"}))["ports"][0]
                    assert isinstance(update, dict)
                    if update["ports"] and update["ports"][0]["status"] == "disabled":
                        break
                # The traffic tally read the inbound SMS from the stream.
                while True:
                    [traffic] = (await _sse(lines, {"traffic"}))["traffic"]
                    assert isinstance(traffic, dict)
                    if sum(traffic["received"]) == 1:
                        break
                assert traffic["minutes"] == 60
