"""`parse_head`: which requests the lean `/sendsms` path reads itself, and what it reads;
the answers of one loop turn written together at its end."""

from __future__ import annotations

import asyncio

import pytest
from smsgate_api.body import MAX_BODY
from smsgate_api.gateway_protocol import MAX_HEAD, GatewayProtocol, Head, Verdict, parse_head
from uvicorn.config import Config as ServerConfig
from uvicorn.server import ServerState

QUERY = b"username=u&password=p&phonenumber=10086&message=hello"
GET = b"GET /sendsms?" + QUERY + b" HTTP/1.1\r\nHost: gw\r\n\r\n"


def head(data: bytes) -> Head:
    parsed = parse_head(data)
    assert isinstance(parsed, Head), parsed
    return parsed


def test_a_plain_get() -> None:
    parsed = head(GET + b"GET /next")
    assert parsed.method == "GET"
    assert parsed.query == QUERY
    assert parsed.http_version == "1.1"
    assert parsed.keep_alive
    assert parsed.size == len(GET)
    assert parsed.content_length == 0


def test_every_split_of_the_head_waits_for_the_rest() -> None:
    for cut in range(len(GET)):
        assert parse_head(GET[:cut]) is Verdict.INCOMPLETE, cut
    assert isinstance(parse_head(GET), Head)


def test_a_post_form_with_its_headers() -> None:
    data = (
        b"POST /sendsms HTTP/1.1\r\nHost: gw\r\ncontent-TYPE: application/x-www-form-urlencoded"
        b"\r\nContent-Length: 12\r\nAuthorization: Basic dTpw\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\nmessage=hi!!"
    )
    parsed = head(data)
    assert parsed.method == "POST"
    assert parsed.query == b""
    assert parsed.content_length == 12
    assert parsed.content_type == "application/x-www-form-urlencoded"
    assert parsed.authorization == "Basic dTpw"
    assert parsed.forwarded_for == [b"10.0.0.1", b"10.0.0.2"]
    assert data[parsed.size :] == b"message=hi!!"


def test_http_1_0_and_connection_close_do_not_keep_the_connection() -> None:
    old = head(b"GET /sendsms?a=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (old.http_version, old.keep_alive) == ("1.0", False)
    close = head(b"GET /sendsms?a=1 HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n")
    assert (close.http_version, close.keep_alive) == ("1.1", False)


def test_headers_it_does_not_read_are_passed_over_whatever_their_number() -> None:
    lines = b"".join(b"X-Header-%d: value %d\r\n" % (n, n) for n in range(40))
    data = b"GET /sendsms?" + QUERY + b" HTTP/1.1\r\nHost: gw\r\n" + lines + b"\r\n"
    parsed = head(data)
    assert (parsed.keep_alive, parsed.content_length, parsed.size) == (True, 0, len(data))
    assert (parsed.content_type, parsed.authorization, parsed.forwarded_for) == (None, None, [])


def test_the_headers_it_reads_are_found_among_others_in_any_case() -> None:
    data = (
        b"POST /sendsms HTTP/1.1\r\nHost: gw\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n"
        b"X-Content-Type: text/json\r\nContent-Types: text/json\r\n"  # not content-type
        b"AUTHORIZATION: Basic dTpw\r\ncontent-type:application/x-www-form-urlencoded\r\n"
        b"CONNECTION: close\r\nContent-LENGTH: 2\r\n\r\nab"
    )
    parsed = head(data)
    assert parsed.authorization == "Basic dTpw"
    assert parsed.content_type == "application/x-www-form-urlencoded"
    assert (parsed.content_length, parsed.keep_alive) == (2, False)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET /sendsmsx?a=1 HTTP/1.1\r\n\r\n",
        b"GET /sendsm%73?a=1 HTTP/1.1\r\n\r\n",  # uvicorn unquotes the path: its job
        b"HEAD /sendsms?a=1 HTTP/1.1\r\n\r\n",
        b"GET http://gw/sendsms?a=1 HTTP/1.1\r\n\r\n",
        b"GET /sendsms?a=1#frag HTTP/1.1\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/2.0\r\n\r\n",
        b"GET  /sendsms?a=1 HTTP/1.1\r\n\r\n",
        b"POST /sendsms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /sendsms HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        b"GET /sendsms HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"POST /sendsms HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        b"POST /sendsms HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        b"POST /sendsms HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost : gw\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: gw\r\n folded\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: gw\r\n: no name\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: gw\r\nX\tName: tab\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\nNo-Colon\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: gw\r\nUser-Agent: x\r\nUPGRADE: h2c\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\nHost: gw\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: g\rw\r\n\r\n",
        b"GET /sendsms?a=1 HTTP/1.1\r\nHost: g\x00w\r\n\r\n",
        "GET /sendsms?a=é HTTP/1.1\r\n\r\n".encode(),
    ],
)
def test_anything_unusual_is_left_to_uvicorn(data: bytes) -> None:
    assert parse_head(data) is Verdict.OTHER


def test_a_head_over_the_limit_is_left_to_uvicorn() -> None:
    endless = b"GET /sendsms?message=" + b"x" * MAX_HEAD
    assert parse_head(endless) is Verdict.OTHER
    assert parse_head(endless + b" HTTP/1.1\r\n\r\n") is Verdict.OTHER


# --- the answers of a turn, written together -----------------------------------------------


class Transport:
    """What the protocol writes, in order, shared by every connection of a test."""

    def __init__(self, name: str, log: list[tuple[str, bytes]]) -> None:
        self.name = name
        self.log = log
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, f"{self.name}: a write after the close"
        self.log.append((self.name, data))

    def close(self) -> None:
        self.log.append((self.name, b"<close>"))
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connection(name: str, log: list[tuple[str, bytes]]) -> GatewayProtocol:
    loop = asyncio.get_running_loop()
    protocol = GatewayProtocol(ServerConfig(app="none:app"), ServerState(), {}, loop)
    protocol.connection_made(Transport(name, log))  # type: ignore[arg-type]
    return protocol


async def test_answers_made_in_one_turn_go_out_together_at_its_end_in_order() -> None:
    log: list[tuple[str, bytes]] = []
    first, second = connection("a", log), connection("b", log)
    first._send(b"answer a", keep_alive=True)
    second._send(b"answer b", keep_alive=True)
    assert log == []  # not between the turn's other work
    await asyncio.sleep(0)
    assert log == [("a", b"answer a"), ("b", b"answer b")]
    for protocol in (first, second):
        protocol.connection_lost(None)


async def test_an_answer_waiting_for_the_end_of_the_turn_goes_out_before_a_close() -> None:
    log: list[tuple[str, bytes]] = []
    kept, stopping, last = connection("a", log), connection("b", log), connection("c", log)
    kept._send(b"answer a", keep_alive=True)
    stopping._send(b"answer b", keep_alive=True)
    stopping.shutdown()  # the server stops in the same turn
    last._send(b"answer c", keep_alive=False)  # an answer that ends its connection
    assert log == [
        ("a", b"answer a"),
        ("b", b"answer b"),
        ("b", b"<close>"),
        ("c", b"answer c"),
        ("c", b"<close>"),
    ]
    await asyncio.sleep(0)
    assert len(log) == 5  # nothing written twice
    kept.connection_lost(None)


async def test_an_answer_to_a_connection_closed_meanwhile_is_dropped() -> None:
    log: list[tuple[str, bytes]] = []
    gone = connection("a", log)
    gone._send(b"answer a", keep_alive=True)
    gone.transport.close()  # type: ignore[union-attr]
    await asyncio.sleep(0)
    assert log == [("a", b"<close>")]
    gone.connection_lost(None)


async def test_a_connection_that_fails_to_write_costs_the_others_nothing() -> None:
    log: list[tuple[str, bytes]] = []
    broken, fine = connection("a", log), connection("b", log)

    def refuse(data: bytes) -> None:
        raise RuntimeError("the transport broke")

    broken.transport.write = refuse  # type: ignore[method-assign, union-attr]
    broken._send(b"answer a", keep_alive=True)
    fine._send(b"answer b", keep_alive=True)
    await asyncio.sleep(0)
    assert log == [("b", b"answer b")]
    for protocol in (broken, fine):
        protocol.connection_lost(None)
