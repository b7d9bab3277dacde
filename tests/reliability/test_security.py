"""Nobody sends without permission, and no secret reaches a log.

Real processes throughout: `smsgate api`, `smsgate agent`, `smsgate callback` and
nats-server, the last with users and passwords and TLS (certificates made here with the
openssl command line). Every captured log of every process is searched for every secret.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import httpx
import msgspec
from nats.aio.client import Client
from nats.errors import Error as NatsError
from smsgate import bus, contracts, subjects
from smsgate.config import ApiUser, NatsConfig
from smsgate.embedded import EmbeddedNats, free_port
from smsgate_api import hash_password
from smsgate_callback import signing

from tests.integration.callback_fixtures import Hit, Receiver, callback_config
from tests.integration.farm import agent_config, start_sim, until
from tests.reliability.ledger import OUTSIDE, until_results
from tests.reliability.procs import Processes, Service, api_config, wait_ports_known, wait_ready

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
            await wait_ports_known(api, sim.devices, headers=alice)
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


# --- NATS with users and TLS; signed callbacks ---------------------------------------------

NATS_USERS = {
    "api": "nats-api-Pw-3c9d1f",
    "agent": "nats-agent-Pw-8e2a64",
    "callback": "nats-cb-Pw-51b7d0",
    "test": "nats-test-Pw-a4f09e",
}
HOOK_SECRET = "hook-secret-2b8f6c1d0e"
JSON_SECRET = "json-secret-9c71e3a5b4"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def certificates(directory: Path) -> dict[str, Path]:
    """Two CAs, and a server (127.0.0.1) and a client certificate from the first: made here."""
    files: dict[str, Path] = {}
    for ca, subject in (("ca", "smsgate test CA"), ("other-ca", "someone else")):
        files[ca], files[f"{ca}.key"] = directory / f"{ca}.pem", directory / f"{ca}.key"
        openssl(
            *("req", "-x509", *EC_KEY, "-days", "2", "-subj", f"/CN={subject}"),
            *("-keyout", files[f"{ca}.key"], "-out", files[ca]),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        )
    for who, usage, names in (
        ("server", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
        ("client", "clientAuth", "DNS:smsgate-client"),
    ):
        files[who], files[f"{who}.key"] = directory / f"{who}.pem", directory / f"{who}.key"
        request, extensions = directory / f"{who}.csr", directory / f"{who}.ext"
        extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage={usage}\n")
        openssl(
            "req",
            *EC_KEY,
            "-subj",
            f"/CN=smsgate {who}",
            "-keyout",
            files[f"{who}.key"],
            "-out",
            request,
        )
        openssl(
            *("x509", "-req", "-in", request, "-days", "2", "-out", files[who]),
            *("-CA", files["ca"], "-CAkey", files["ca.key"], "-CAcreateserial"),
            *("-extfile", extensions),
        )
    return files


def secure_server(directory: Path, certs: dict[str, Path]) -> EmbeddedNats:
    """nats-server with TLS (a client certificate required) and a password per service."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    users = ", ".join(f'{{user: "{u}", password: "{p}"}}' for u, p in NATS_USERS.items())
    conf = directory / "nats.conf"
    conf.write_text(
        f'server_name: "secure"\nlisten: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{directory / "store"}" }}\n'
        f'tls {{ cert_file: "{certs["server"]}", key_file: "{certs["server.key"]}", '
        f'ca_file: "{certs["ca"]}", verify: true, timeout: 2 }}\n'
        f"authorization {{ users: [{users}] }}\n"
    )
    return EmbeddedNats(store_dir=directory, port=port, config_file=conf)


def nats_as(server: EmbeddedNats, certs: dict[str, Path], who: str, **changes: str) -> NatsConfig:
    """Connection settings for user `who`: password, the CA, the client certificate."""
    settings: dict[str, str] = {
        "url": server.url,
        "user": who,
        "password": NATS_USERS.get(who, ""),
        "tls_ca": str(certs["ca"]),
        "tls_cert": str(certs["client"]),
        "tls_key": str(certs["client.key"]),
        **changes,
    }
    return msgspec.convert({k: v for k, v in settings.items() if v}, NatsConfig)


async def refusal(config: NatsConfig) -> str:
    """Why a connection with `config` is refused (it must be): one try, no reconnects."""
    nc = Client()
    options: dict[str, object] = {}
    if config.user:
        options.update(user=config.user, password=config.password or "")
    if config.tls_ca:
        context = ssl.create_default_context(cafile=config.tls_ca)
        if config.tls_cert:
            context.load_cert_chain(config.tls_cert, config.tls_key)
        options["tls"] = context

    async def quiet(exc: Exception) -> None:
        pass

    try:
        async with asyncio.timeout(10):
            await nc.connect(
                servers=config.servers,
                allow_reconnect=False,
                connect_timeout=3,
                error_cb=quiet,
                **options,  # type: ignore[arg-type]
            )
    except (NatsError, OSError, ssl.SSLError, TimeoutError) as exc:
        return f"{type(exc).__name__} {exc}".strip()
    await nc.close()
    raise AssertionError(f"{config} connected; it must be refused")


def verified(hit: Hit, secret: str) -> bool:
    """The receiver's check: the signature over what arrived, with `secret`."""
    return signing.verify(
        secret,
        hit.headers.get(signing.TIMESTAMP_HEADER.lower(), ""),
        signing.signed_content(hit.method, hit.query, hit.body),
        hit.headers.get(signing.SIGNATURE_HEADER.lower(), ""),
    )


def tampered(hit: Hit) -> Hit:
    """The same request with one bit of what the signature covers flipped."""
    content = bytearray(signing.signed_content(hit.method, hit.query, hit.body))
    content[len(content) // 2] ^= 0x01
    if hit.method == "GET":
        return Hit(hit.method, hit.path, bytes(content), hit.headers, hit.body)
    return Hit(hit.method, hit.path, hit.query, hit.headers, bytes(content))


async def send(api: Service, message_id: str) -> str:
    """One message through the API, waiting for its result; the result."""
    fields = {
        "username": "alice",
        "password": ALICE_PASSWORD,
        "phonenumber": OUTSIDE,
        "message": f"secure {message_id}",
        "timeout": "20",
        "id": message_id,
    }
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.post("/sendsms", data=fields)
    assert response.status_code == 200, response.text
    return str(response.json()["report"]["0"]["result"])


async def test_nats_users_tls_and_signed_callbacks(tmp_path: Path, procs: Processes) -> None:
    certs = await asyncio.to_thread(certificates, tmp_path)
    server = secure_server(tmp_path / "nats", certs)
    await asyncio.to_thread(server.start)
    sim = await start_sim(ports=2, transport="tcp")
    receiver = Receiver()
    await receiver.start()
    client: Client | None = None
    try:
        # Who may not connect: no password, a wrong one, no TLS, a stranger's CA, no cert.
        refusals = {
            "anonymous": await refusal(nats_as(server, certs, "nobody")),
            "wrong password": await refusal(nats_as(server, certs, "test", password="guess")),
            "no TLS": await refusal(
                NatsConfig(url=server.url, user="test", password=NATS_USERS["test"])
            ),
            "unknown CA": await refusal(
                nats_as(server, certs, "test", tls_ca=str(certs["other-ca"]))
            ),
            "no client certificate": await refusal(
                nats_as(server, certs, "test", tls_cert="", tls_key="")
            ),
        }
        for why, what in refusals.items():
            print(f"[security] refused, {why}: {what}")
        client = await bus.connect(nats_as(server, certs, "test"), name="reliability")
        await bus.provision(client.jetstream(), nats_as(server, certs, "test"))
        # Each service with its own user; the agent's password is in its URL, as some write it.
        in_url = f"nats://agent:{NATS_USERS['agent']}@127.0.0.1:{server.port}"
        agent_nats = nats_as(server, certs, "agent", url=in_url, user="", password="")
        procs.start("agent", "agent", agent_config(agent_nats, "host-a", sim.devices))
        crm = {"name": "crm", "url": receiver.url, "format": "json", "secret": JSON_SECRET}
        callback = callback_config(
            nats_as(server, certs, "callback"), url=receiver.url, secret=HOOK_SECRET, webhooks=[crm]
        )
        procs.start("callback", "callback", callback)
        api = procs.start("api", "api", api_config(nats_as(server, certs, "api"), USERS))
        await wait_ready(api)
        assert await send(api, "tls-1") == "sent"

        def called_back(message_id: str) -> bool:
            methods = {h.method for h in receiver.hits if h.event_id == f"{message_id}:result"}
            return methods == {"GET", "POST"}  # the gateway webhook and the JSON one

        await until(lambda: called_back("tls-1"), "the result through both webhooks", 30)
        # kill -9 and restart: every service reconnects with its credentials (and logs none).
        server.kill()
        await asyncio.to_thread(server.start)
        await wait_ready(api)
        assert await send(api, "tls-2") == "sent"
        await until(lambda: called_back("tls-2"), "callbacks after the restart", 30)
        alive = {s.name: s.alive for s in procs.services}
    finally:
        if client is not None:
            await client.close()
        await procs.stop_all()
        await receiver.stop()
        await sim.stop()
        server.stop()
    assert all(alive.values()), alive
    signed = {"GET": HOOK_SECRET, "POST": JSON_SECRET}
    assert all(verified(h, signed[h.method]) for h in receiver.hits)
    assert not any(verified(tampered(h), signed[h.method]) for h in receiver.hits)
    assert not any(verified(h, JSON_SECRET) for h in receiver.hits if h.method == "GET")
    print(f"[security] {len(receiver.hits)} signed callbacks verified; every tampered copy fails")
    logs = procs.logs()
    logs["nats-server"] = (tmp_path / "nats" / "nats-server.log").read_text(errors="replace")
    secrets = [*NATS_USERS.values(), ALICE_PASSWORD, ALICE_TOKEN, HOOK_SECRET, JSON_SECRET]
    assert not secrets_in(logs, secrets)
