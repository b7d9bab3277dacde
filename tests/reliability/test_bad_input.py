"""Bad input from every side: HTTP parameters and bodies, jobs on the bus, config files,
and bytes from a modem. None of it may crash a service or come back as a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import select
import socket
import sys
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from smsgate import contracts, subjects
from smsgate.config import ApiUser, NatsConfig
from smsgate.embedded import EmbeddedNats, free_port

from tests.conftest import Bus
from tests.integration.api_fixtures import PASSWORD, Api, api_config, running_api
from tests.integration.farm import agent_config, job, publish_jobs, start_sim, until
from tests.reliability.ledger import OUTSIDE, port_state, stream_results, until_async
from tests.reliability.procs import Processes, wait_ready
from tests.reliability.procs import api_config as process_api_config

# --- /sendsms parameters, fuzzed ------------------------------------------------------------

EXAMPLES = 5000
USERS = {"smsuser": PASSWORD, "limited": "limitedpw", "nodr": "nodrpw"}
ANSWERS = {200, 400, 401, 403, 409, 415, 429, 503}

# Hypothesis spends ~60 µs a draw; 5,000 examples must take seconds, so each field is one
# draw from a list of good and bad values, and one free-form value (bytes: a single draw,
# where text costs one per character) lands in a field chosen by another draw. Unknown user
# names are left to the unit tests: each costs a deliberate scrypt (timing must not tell).
VALUES: dict[str, list[str]] = {
    "phonenumber": [
        "10086",
        "+4915112345678",
        "+1555010000,10086",
        ",,10086,",
        "+",
        "12",
        "1" * 21,
        "１２３４５",
        "10086;DROP",
        "+4915112345678," * 30,
        " 10086 ",
        "",
    ],
    "message": [
        "ye",
        "€" * 200,
        "x" * 500,
        "你好" * 120,
        "\x00",
        "😀" * 70,
        "%",
        "+",
        "a&b=c",
        "",
        "line\r\nbreak",
        "\ud7ff\ue000",
    ],
    "port": ["lte-1", "lte-2", "1", "2,3", "lte-9", "*", ",", "1,1,1", "9" * 30, "lte-1.x", ""],
    "report": ["JSON", "string", "NO", "xml", "", "json,no"],
    "timeout": ["0", "-1", "nan", "inf", "1e309", "0.01", "1e-9", " ", "0x10", "٣"],
    "id": ["edeb7540", "a.b", ".x", "x" * 65, "a/b", "é", "x-", "a..b", ""],
    "dr": ["1", "0", "yes", "maybe", "", "TRUE"],
}
NAMES = [*VALUES, "PhoneNumber", "onenumber", "phonenummer", "MESSAGE", "password ", "x"]
LOGINS: list[tuple[str, str, bool] | None] = [  # (user, password, as HTTP Basic)
    *((u, p, False) for u, p in USERS.items()),
    *((u, p, False) for u, p in USERS.items()),
    *((u, p, True) for u, p in USERS.items()),
    ("smsuser", "wrong", False),
    ("smsuser", "", False),
    ("", "", False),
    None,
]
JUNK = [b"", b"%", b"%Z", b"%zz=1", b"%FF%FE=%C0%80", b"a=%E2%82", b"&&&==&", b"=", b"\xff=\xfe"]
KINDS = ["GET", "application/x-www-form-urlencoded", "text/plain", "application/json", ""]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, bytes, dict[str, str]]:
    """(method, query, body, headers) of one /sendsms request."""
    present = draw(st.integers(0, 2 ** len(VALUES) - 1) | st.just(2 ** len(VALUES) - 1))
    pairs = [
        (name, draw(st.just(choices[0]) | st.sampled_from(choices)))  # the first is good
        for bit, (name, choices) in enumerate(VALUES.items())
        if present >> bit & 1
    ]
    free = draw(st.binary(max_size=24))
    if free:  # one field, maybe an unusual name, gets a free-form value
        name = draw(st.sampled_from(NAMES))
        pairs.append((name, free.decode("utf-8", "replace")))
    login = draw(st.sampled_from(LOGINS))
    headers: dict[str, str] = {}
    if login is not None and login[2]:
        basic = f"{login[0]}:{login[1]}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
    elif login is not None:
        pairs = [("username", login[0]), ("password", login[1]), *pairs]
    shift = draw(st.integers(0, 15))
    encoded = urllib.parse.urlencode(
        pairs[shift % len(pairs) :] + pairs[: shift % len(pairs)] if pairs else []
    ).encode()
    junk = draw(st.sampled_from(JUNK) | st.binary(max_size=16))
    if junk:
        encoded += b"&" + junk
    kind = draw(st.sampled_from(KINDS))
    if kind == "GET":
        # A URL carries ASCII only: other bytes go percent-encoded, broken escapes stay broken.
        return "GET", urllib.parse.quote_from_bytes(encoded, safe="=&%+").encode(), b"", headers
    headers["Content-Type"] = kind
    query = b"report=String" if shift == 3 else b"password=x" if shift == 4 else b""
    return "POST", query, encoded, headers


@dataclass
class Fuzzing:
    api: Api
    answers: Counter[int] = field(default_factory=Counter)


@pytest.fixture
async def fuzzing(nats_bus: Bus) -> AsyncIterator[Fuzzing]:
    """The app on a real nats-server, once for all examples; checks the count at the end."""
    users = [
        ApiUser(name="smsuser", password=PASSWORD),
        ApiUser(name="limited", password="limitedpw", ports=["lte-1", "lte-2"]),
        ApiUser(name="nodr", password="nodrpw", delivery_report=False),
    ]
    # Fuzzing tries many wrong passwords from one address: let throttling not hide the rest.
    config = api_config(
        nats_bus.config, users=users, login_max_failures=10**9, max_parts=3, max_recipients=20
    )
    async with running_api(nats_bus, config) as api:
        state = Fuzzing(api)
        yield state
    answers = state.answers
    print(f"[bad input] /sendsms fuzzed: {sum(answers.values())} requests, answers {answers}")
    assert sum(answers.values()) >= EXAMPLES
    assert answers[200] > 0  # the generator reaches the sending path, not only refusals


@given(case=requests())
@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
async def test_sendsms_fuzzed_parameters_never_5xx(
    fuzzing: Fuzzing, case: tuple[str, bytes, bytes, dict[str, str]]
) -> None:
    """5,000 generated requests against the app on a real nats-server: no 5xx, ever."""
    method, query, body, headers = case
    url = httpx.URL("/sendsms", query=query)
    response = await fuzzing.api.client.request(method, url, content=body, headers=headers)
    fuzzing.answers[response.status_code] += 1
    assert response.status_code in ANSWERS, response.text


# --- huge and malformed bodies, through a real server -----------------------------------------

USER, SECRET = "bodyuser", "body-pw-77aa"


@pytest.fixture
async def api_process(server: EmbeddedNats, client: Client, procs: Processes) -> str:
    config = process_api_config(
        NatsConfig(url=server.url), [ApiUser(name=USER, password=SECRET, token="tok-body")]
    )
    api = procs.start("api", "api", config)
    await wait_ready(api)
    return api.url


@dataclass
class Upload:
    """What a hand-made request got: the server's answer and how much body went out first."""

    answer: bytes = b""
    sent: int = 0

    @property
    def status_line(self) -> bytes:
        return self.answer.split(b"\r\n")[0]


def upload(url: str, head: bytes, body: Iterator[bytes], limit: float = 10.0) -> Upload:
    """Send a request by hand, body piece by piece, until the server answers or stops reading.

    The socket's timeout bounds every step.
    """
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname is not None
    done = Upload()
    with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=limit) as sock:
        sock.sendall(head)
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is in
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server hung up, or stopped taking the body
            done.sent += len(piece)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in done.answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                done.answer += chunk
    return done


def pieces(total: int, size: int = 65536) -> Iterator[bytes]:
    for _ in range(0, total, size):
        yield b"a" * size


def chunked(total: int, size: int = 65536) -> Iterator[bytes]:
    for piece in pieces(total, size):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


FIFTY_MB = 50 * 1024 * 1024


async def test_huge_and_malformed_bodies_are_refused_early(api_process: str) -> None:
    url = api_process
    for path in ("/sendsms", "/api/v1/messages"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-body\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {FIFTY_MB}\r\n\r\n"
        ).encode()
        declared = await asyncio.to_thread(upload, url, head, pieces(FIFTY_MB))
        # The same without a length: chunks until the server has had enough.
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-body\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        streamed = await asyncio.to_thread(upload, url, head, chunked(FIFTY_MB))
        for how, done in (("Content-Length", declared), ("chunked", streamed)):
            print(f"[bad input] {path} 50 MB, {how}: {done.status_line!r} after {done.sent} bytes")
            assert done.status_line.startswith(b"HTTP/1.1 413"), done.answer[:300]
            # Refused long before the body was in (what was sent sits in socket buffers).
            assert done.sent < FIFTY_MB // 4
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        auth = {"Authorization": "Bearer tok-body"}
        for body in (b"{", b"[1,2", b"\xff\xfe", b'{"to": ["+15550100"], "text": 5}', b"null"):
            response = await http.post("/api/v1/messages", content=body, headers=auth)
            assert response.status_code == 400, (body, response.text)
        assert (await http.get("/healthz")).status_code == 200  # still serving
    # A 1 MB request line (more than any client sends): refused, and the server lives on.
    head = b"GET /sendsms?message=" + b"x" * 1024 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    long_line = await asyncio.to_thread(upload, url, head, iter(()))
    print(f"[bad input] 1 MB request line: {long_line.status_line!r}")
    assert not long_line.status_line.startswith(b"HTTP/1.1 5")
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200


# --- malformed jobs on the bus ----------------------------------------------------------------

MALFORMED: list[bytes] = [
    b"",
    b"\xff not json",
    b"{",
    b"[]",
    b"null",
    b'"a job"',
    b'{"id": 5, "to": []}',
    b'{"id": "x"}',
    b'{"id": "", "to": "+1555", "text": "t", "created": "2026-01-01T00:00:00Z"}',
    b'{"id": "x", "to": "+1555", "text": "t", "created": "yesterday"}',
    b'{"id": "x", "to": "+1555", "text": "t", "created": "2026-01-01T00:00:00Z", "port": "a.b"}',
    b'{"id": "x", "to": "' + b"9" * 100 + b'", "text": "t", "created": "2026-01-01T00:00:00Z"}',
    b"{" * 10_000,
    os.urandom(256 * 1024),
]


async def test_malformed_jobs_go_to_dead_letters_and_the_agent_carries_on(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=2, transport="tcp")
    try:
        procs.start("agent", "agent", agent_config(nats, "host-a", sim.devices, ack_wait=2.0))
        ports = await js.key_value(subjects.PORTS_BUCKET)
        await until_ports(ports, sim.devices)
        for payload in MALFORMED:
            await js.publish(subjects.SEND_ANY, payload)
            await js.publish(subjects.send_port("lte-1"), payload)
        # Well-formed, but not a number a PDU can carry: a failed result, not a crash.
        unsendable = contracts.SendJob(
            id="unsendable", to="not a number", text="t", created=contracts.utcnow()
        )
        good = [job(OUTSIDE, f"good {i}", status_report=False) for i in range(20)]
        ids = await publish_jobs(client, [unsendable, *good])

        async def all_results() -> bool:
            return set(ids) <= (await stream_results(js)).keys()

        await until_async(all_results, "results for the jobs after the junk", 60)
        dead = await read_dead(js, 2 * len(MALFORMED))
        results = await stream_results(js)
        alive = procs.services[0].alive
        log = procs.services[0].log()
    finally:
        await procs.stop_all()
        await sim.stop()
    print(
        f"[bad input] malformed jobs: {2 * len(MALFORMED)} published, {len(dead)} dead letters, "
        f"agent alive={alive}"
    )
    assert alive
    assert "Traceback" not in log
    assert len(dead) == 2 * len(MALFORMED)
    assert all(letter.reason.startswith("malformed job") for letter in dead)
    assert {letter.subject for letter in dead} == {subjects.SEND_ANY, subjects.send_port("lte-1")}
    [failed] = results["unsendable"]
    assert failed.status is contracts.SendStatus.FAILED
    assert failed.reason
    assert all(results[i][0].status is contracts.SendStatus.SENT for i in ids[1:])


async def until_ports(kv: KeyValue, devices: dict[str, str]) -> None:
    """Until every port of `devices` is ready in the `sms_ports` bucket."""

    async def up() -> bool:
        for name in devices:
            try:
                entry = await kv.get(name)
            except KeyNotFoundError:
                return False
            if port_state(entry.value).status is not contracts.PortStatus.READY:
                return False
        return True

    await until_async(up, "every port ready", 30)


async def read_dead(js: JetStreamContext, count: int) -> list[contracts.DeadLetter]:
    """The first `count` dead letters, once there are that many."""

    async def enough() -> bool:
        info = await js.stream_info(subjects.DEAD_STREAM)
        return int(info.state.messages) >= count

    await until_async(enough, f"{count} dead letters", 30)
    info = await js.stream_info(subjects.DEAD_STREAM)
    letters = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(subjects.DEAD_STREAM, seq)
        assert msg.data is not None
        letters.append(contracts.decode(msg.data, contracts.DeadLetter))
    return letters


# --- malformed config files -------------------------------------------------------------------

BAD_CONFIGS: list[tuple[str, str | None, str]] = [
    # (service, the file (None: there is none), what the error must name)
    ("agent", '[agent]\nname = "a"\nheartbeat = "fast"\n', "agent.heartbeat"),
    ("agent", '[agent]\nname = "a"\ncolour = "blue"\n', "colour"),
    (
        "agent",
        '[agent]\nname = "a"\n[[agent.ports]]\nname = "bad.name"\ndevice = "x"\n',
        "agent.ports[0].name",
    ),
    ("agent", '[[agent.ports]]\nname = "lte-1"\ndevice = "/dev/x"\n', "agent.name"),
    ("agent", "[agent\nname = 1\n", "not valid TOML"),
    ("agent", None, "no such file"),
    ("agent", "[nats]\nreplicas = 9\n", "nats.replicas"),
    ("api", '[[api.users]]\nname = "u"\n', "api.users[0]"),
    ("api", '[api]\ndefault_report = "XML"\n', "api.default_report"),
    (
        "api",
        '[api]\nlisten = "everywhere"\n[[api.users]]\nname = "u"\npassword = "p"\n',
        "api.listen",
    ),
    ("callback", "[callback]\ntimeout = -1\n", "callback.timeout"),
    ("callback", '[callback]\nurl = "ftp://x"\n', "callback"),
]


async def start_with(path: Path, service: str) -> tuple[int, str]:
    """Run `smsgate <service> --config path` to its end (bounded); (exit code, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "smsgate_cli", service, "--config", str(path)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return int(process.returncode or 0), err.decode(errors="replace")


async def test_malformed_config_files_fail_clearly_at_start(tmp_path: Path) -> None:
    paths = [tmp_path / f"bad-{i}.toml" for i in range(len(BAD_CONFIGS))]
    for path, (_, text, _) in zip(paths, BAD_CONFIGS, strict=True):
        if text is not None:
            path.write_text(text)
    outcomes = await asyncio.gather(
        *(
            start_with(path, service)
            for path, (service, _, _) in zip(paths, BAD_CONFIGS, strict=True)
        )
    )
    for path, (code, err), (service, _, names) in zip(paths, outcomes, BAD_CONFIGS, strict=True):
        print(f"[bad input] smsgate {service}, exit {code}: {err.strip()}")
        assert code == 2, err
        assert str(path) in err, err
        assert names in err, err
        assert "Traceback" not in err


# --- random bytes from a modem ----------------------------------------------------------------


class Babbler:
    """A TCP "modem" that answers everything, and nothing, with random bytes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.bytes_sent = 0
        self._server: asyncio.Server | None = None

    @property
    def device(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._talk, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                burst = os.urandom(int.from_bytes(os.urandom(1)) * 16 + 1)
                writer.write(burst)
                self.bytes_sent += len(burst)
                await writer.drain()
                await asyncio.sleep(0.005)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def test_random_bytes_from_a_modem_never_crash_the_agent(
    server: EmbeddedNats, client: Client, procs: Processes
) -> None:
    js = client.jetstream()
    nats = NatsConfig(url=server.url)
    sim = await start_sim(ports=2, transport="tcp")
    sim.set_fault("lte-2", garbage_rate=0.9, urc_rate=0.9)
    babbler = Babbler()
    await babbler.start()
    devices = {**sim.devices, "lte-3": babbler.device}
    try:
        procs.start(
            "agent", "agent", agent_config(nats, "host-a", devices, ack_wait=2.0, send_timeout=3.0)
        )
        ids = await publish_jobs(
            client, [job(OUTSIDE, f"noise {i}", status_report=False) for i in range(60)]
        )

        async def all_results() -> bool:
            return set(ids) <= (await stream_results(js)).keys()

        await until_async(all_results, "a result for every job", 90)
        await until(lambda: babbler.bytes_sent > 1_000_000, "a megabyte of noise", 30)
        results = await stream_results(js)
        ports = await js.key_value(subjects.PORTS_BUCKET)
        state = port_state((await ports.get("lte-3")).value)
        alive = procs.services[0].alive
        log = procs.services[0].log()
    finally:
        await procs.stop_all()
        await babbler.stop()
        await sim.stop()
    by_port = Counter(r[0].port for r in results.values())
    print(
        f"[bad input] random bytes: {babbler.bytes_sent} bytes over {babbler.connections} "
        f"connections; results by port {dict(by_port)}; lte-3 {state.status}: {state.last_error}"
    )
    assert alive
    assert "Traceback" not in log
    assert all(len(results[i]) == 1 for i in ids)
    assert by_port["lte-3"] == 0  # the babbling port never took a job
    assert state.status is contracts.PortStatus.DOWN
