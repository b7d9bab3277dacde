"""The lean reader against nats-py's own parser: fed the same bytes, split anywhere, it hands
the client the same messages and the same other operations, in the same order."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser
from smsgate.protocol_reader import LeanParser


class Client:
    """What a parser calls on its client, recorded."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.parser: Parser | None = None
        self.reset_at: int | None = None  # reset the parser when this message arrives

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self.seen.append(("msg", sid, bytes(subject), bytes(reply), bytes(data), headers))
        if self.reset_at == len(self.seen) and self.parser is not None:
            self.parser.reset()  # what a reconnect does

    async def _process_ping(self) -> None:
        self.seen.append(("ping",))

    async def _process_pong(self) -> None:
        self.seen.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.seen.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.seen.append(("err", err))


def _msg(subject: str, sid: int, reply: str, payload: bytes) -> bytes:
    reply_part = f" {reply}" if reply else ""
    return f"MSG {subject} {sid}{reply_part} {len(payload)}\r\n".encode() + payload + b"\r\n"


def _hmsg(subject: str, sid: int, reply: str, headers: bytes, payload: bytes) -> bytes:
    reply_part = f" {reply}" if reply else ""
    total = len(headers) + len(payload)
    line = f"HMSG {subject} {sid}{reply_part} {len(headers)} {total}\r\n".encode()
    return line + headers + payload + b"\r\n"


STREAM = b"".join(
    [
        _msg("_INBOX.abc.1", 3, "", b'{"stream":"S","seq":1}'),
        _msg("sms.send.any", 7, "$JS.ACK.SMS_SEND.c.1.2.3.4.0", b"job\r\nwith crlf"),
        b"PING\r\n",
        _hmsg("_INBOX.abc.2", 3, "", b"NATS/1.0 503\r\n\r\n", b""),
        b"+OK\r\n",
        _hmsg("$KV.x.k", 12, "reply.to", b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n", b"v"),
        _msg("empty", 4, "", b""),
        b"PONG\r\n",
        b'INFO {"server_id":"n1","max_payload":1048576}\r\n',
        _msg("tabbed", 5, "", b"x").replace(b" ", b"\t", 1),
        b"-ERR 'Stale Connection'\r\n",
        _msg("last", 9, "r", b"z" * 70_000),
    ]
)


def _feed(parser: Parser, chunks: list[bytes]) -> None:
    async def run() -> None:
        for chunk in chunks:
            await parser.parse(chunk)

    asyncio.run(run())


def _read(kind: type[Parser], chunks: list[bytes]) -> list[tuple[Any, ...]]:
    client = Client()
    _feed(kind(client), chunks)
    return client.seen


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def test_the_whole_stream_in_one_read_reads_as_nats_py_reads_it() -> None:
    expected = _read(Parser, [STREAM])
    assert [entry[0] for entry in expected].count("msg") == 7
    assert _read(LeanParser, [STREAM]) == expected


def test_every_split_in_two_reads_as_nats_py_reads_it() -> None:
    head = STREAM[:2_000]  # every control line and header block, split at every byte
    expected = _read(Parser, [head])
    for cut in range(len(head) + 1):
        assert _read(LeanParser, [head[:cut], head[cut:]]) == expected, cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=30))
def test_any_splits_read_as_nats_py_reads_them(cuts: list[int]) -> None:
    chunks = _split(STREAM, cuts)
    assert _read(LeanParser, chunks) == _read(Parser, chunks)


def test_a_reset_while_a_message_is_handed_on_drops_the_rest_of_the_read() -> None:
    """A reconnect resets the parser from inside the hand-off: what the old connection's
    read still held is not handed on, and nothing of it is left for the new connection."""
    client = Client()
    parser = LeanParser(client)
    client.parser = parser
    client.reset_at = 1
    _feed(parser, [STREAM])
    assert len(client.seen) == 1
    assert parser.buf == bytearray()
    _feed(parser, [_msg("after", 2, "", b"ok")])
    assert client.seen[-1] == ("msg", 2, b"after", b"", b"ok", None)


@pytest.mark.parametrize(
    "line",
    [b"MSG only-subject\r\n", b"MSG s notanumber 3\r\nabc\r\n", b"HMSG s 1 2 3 x 9\r\n"],
)
def test_a_malformed_message_line_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        _feed(LeanParser(Client()), [line])
