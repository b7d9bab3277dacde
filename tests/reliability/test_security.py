"""Nobody sends without permission, and no secret reaches a log.

Real processes throughout: `smsgate api`, `smsgate agent`, `smsgate callback` and
nats-server, the last with users and passwords and TLS (certificates made here with the
openssl command line). Every captured log of every process is searched for every secret.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable

import httpx
from nats.aio.client import Client
from smsgate import contracts, subjects
from smsgate.config import ApiUser, NatsConfig
from smsgate.embedded import EmbeddedNats
from smsgate_api import hash_password

from tests.integration.farm import agent_config, start_sim
from tests.reliability.ledger import OUTSIDE, until_async, until_results
from tests.reliability.procs import Processes, api_config, wait_ready

ALICE_PASSWORD = "alice-Pw-7f3e91c2"  # stored as a scrypt hash
BOB_PASSWORD = "bob-Pw-04d1e6a8"  # stored as it is (accepted with a warning)
ALICE_TOKEN = "alice-token-5d0c2b77e9"
WRONG = ["wrong-Pw-1a2b3c", "Alice-Pw-7f3e91c2", "alice-pw-7f3e91c2x", ""]
USERS = [
    ApiUser(name="alice", password=hash_password(ALICE_PASSWORD), token=ALICE_TOKEN),
    ApiUser(name="bob", password=BOB_PASSWORD, ports=["lte-1"]),
]


def gateway(
    user: str | None, password: str | None, client_ip: str, **params: str
) -> tuple[str, dict[str, str]]:
    """A /sendsms query (credentials in it) and headers naming the client, as a proxy would."""
    fields = {"phonenumber": OUTSIDE, "message": "hello", "timeout": "0", **params}
    if user is not None:
        fields["username"] = user
    if password is not None:
        fields["password"] = password
    return "/sendsms?" + urllib.parse.urlencode(fields), {"X-Forwarded-For": client_ip}


def secrets_in(logs: dict[str, str], secrets: Iterable[str]) -> list[tuple[str, str]]:
    """(log, secret) for every secret found in a log."""
    return [(name, s) for name, text in logs.items() for s in secrets if s and s in text]


async def test_credentials_ports_and_throttling(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=2, transport="tcp")
    try:
        procs.start("agent", "agent", agent_config(nats, "host-a", sim.devices))
        api = procs.start("api", "api", api_config(nats, USERS), "--log-level", "debug")
        await wait_ready(api)
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            alice = {"Authorization": f"Bearer {ALICE_TOKEN}"}

            async def both_ports_known() -> bool:
                ports = (await http.get("/api/v1/ports", headers=alice)).json()["ports"]
                return {p["port"] for p in ports} == set(sim.devices)

            await until_async(both_ports_known, "the API knows both ports", 30)
            before = (await js.stream_info(subjects.SEND_STREAM)).state.last_seq

            # Missing or wrong credentials, each from its own client: 401, nothing queued.
            refused: list[httpx.Response] = []
            attempts = [
                gateway(None, None, "10.0.1.1"),
                gateway("alice", None, "10.0.1.2"),
                gateway(None, ALICE_PASSWORD, "10.0.1.3"),
                gateway("mallory", ALICE_PASSWORD, "10.0.1.4"),
                gateway("ALICE", ALICE_PASSWORD, "10.0.1.5"),
                *(gateway("alice", w, f"10.0.2.{i}") for i, w in enumerate(WRONG)),
                *(gateway("bob", w, f"10.0.3.{i}") for i, w in enumerate(WRONG)),
            ]
            for path, headers in attempts:
                refused.append(await http.get(path, headers=headers))
            form = {"username": "alice", "password": WRONG[0], "phonenumber": OUTSIDE}
            refused.append(
                await http.post(
                    "/sendsms",
                    data={**form, "message": "x"},
                    headers={"X-Forwarded-For": "10.0.4.1"},
                )
            )
            basic = base64.b64encode(f"alice:{WRONG[0]}".encode()).decode()
            path, headers = gateway(None, None, "10.0.4.2")
            refused.append(
                await http.get(path, headers={**headers, "Authorization": f"Basic {basic}"})
            )
            body = {"to": [OUTSIDE], "text": "x"}
            for i, token in enumerate(("not-a-token", ALICE_TOKEN[:-1], ALICE_TOKEN + "0")):
                bearer = {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"10.0.5.{i}"}
                refused.append(await http.post("/api/v1/messages", json=body, headers=bearer))
            assert [r.status_code for r in refused] == [401] * len(refused), [
                (r.status_code, r.text) for r in refused
            ]
            after = (await js.stream_info(subjects.SEND_STREAM)).state.last_seq
            assert after == before  # not one job reached the queue

            # A user limited to lte-1 cannot send from lte-2, by name or by number: 403.
            for port in ("lte-2", "2", "lte-1,lte-2"):
                path, headers = gateway("bob", BOB_PASSWORD, "10.0.6.1", port=port)
                response = await http.get(path, headers=headers)
                assert response.status_code == 403, response.text
            assert (await js.stream_info(subjects.SEND_STREAM)).state.last_seq == before
            # ... but may send from lte-1, and is kept to it without asking.
            sent_ids = []
            for i, port in enumerate(("lte-1", "1", "")):
                path, headers = gateway("bob", BOB_PASSWORD, "10.0.6.1", id=f"bob-{i}", port=port)
                response = await http.get(path, headers=headers)
                assert response.status_code == 200, response.text
                sent_ids.append(f"bob-{i}")

            # Repeated failures from one client are throttled, even with the right password.
            throttled = []
            for _ in range(7):
                path, headers = gateway("alice", WRONG[0], "10.0.7.1")
                throttled.append(await http.get(path, headers=headers))
            path, headers = gateway("alice", ALICE_PASSWORD, "10.0.7.1")
            blocked = await http.get(path, headers=headers)
            path, headers = gateway("alice", ALICE_PASSWORD, "10.0.7.2", id="alice-1")
            elsewhere = await http.get(path, headers=headers)
            wrong_tokens = [
                await http.get(
                    "/api/v1/ports",
                    headers={"Authorization": f"Bearer guess-{i}", "X-Forwarded-For": "10.0.8.1"},
                )
                for i in range(7)
            ]
        results = await until_results(js, [*sent_ids, "alice-1"], 30)
    finally:
        await procs.stop_all()
        await sim.stop()
    codes = [r.status_code for r in throttled]
    print(f"[security] {len(refused)} bad logins: 401; throttled: {codes}, {blocked.status_code}")
    assert codes[:5] == [401] * 5
    assert set(codes[5:]) == {429}
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert elsewhere.status_code == 200  # another client is not locked out with the attacker
    assert {r.status_code for r in wrong_tokens[5:]} == {429}
    assert {results[i][0].port for i in sent_ids} == {"lte-1"}
    assert results["alice-1"][0].status is contracts.SendStatus.SENT
    logs = procs.logs()
    assert "uvicorn.access" in logs["api"] or "GET /sendsms" in logs["api"]  # it was logged
    leaks = secrets_in(logs, [ALICE_PASSWORD, BOB_PASSWORD, ALICE_TOKEN, *WRONG])
    assert not leaks
