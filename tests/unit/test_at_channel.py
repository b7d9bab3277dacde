"""The AT channel over an in-memory line: one command at a time, timeouts, prompts, URCs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from smsgate_agent.at_channel import (
    AtChannel,
    AtClosed,
    AtTimeout,
    NoPrompt,
    SendInterrupted,
    SendTimeout,
)
from smsgate_agent.at_parser import Reply, Status, Urc
from smsgate_agent.transport import TransportError


class Line:
    """Both ends of a serial line; the test plays the modem."""

    def __init__(self) -> None:
        self.to_agent: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written = bytearray()
        self.wrote = asyncio.Event()
        self.closed = False

    # the agent's side (Transport)
    async def read(self) -> bytes:
        data = await self.to_agent.get()
        if data is None:
            raise TransportError("line dropped")
        return data

    async def write(self, data: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self.closed:
            raise TransportError("line dropped")
        self.written += data
        self.wrote.set()

    async def close(self) -> None:
        self.closed = True
        self.to_agent.put_nowait(None)

    # the modem's side
    def say(self, data: bytes) -> None:
        self.to_agent.put_nowait(data)

    async def heard(self, data: bytes) -> None:
        """Wait until the agent has written `data` (then forget what was written)."""
        while data not in self.written:
            self.wrote.clear()
            await self.wrote.wait()
        self.written.clear()

    def drop(self) -> None:
        self.closed = True
        self.to_agent.put_nowait(None)


@asynccontextmanager
async def channel() -> AsyncIterator[tuple[AtChannel, Line, list[Urc]]]:
    line = Line()
    urcs: list[Urc] = []
    at = AtChannel(line, on_urc=urcs.append, settle_time=0.05, quiet_time=0.01, escape_wait=0.2)
    at.start()
    try:
        async with asyncio.timeout(10):
            yield at, line, urcs
    finally:
        await at.close()


async def _escape_answer_is_not_the_next_reply(at: AtChannel, line: Line) -> None:
    line.say(b"\r\nOK\r\n")  # what the ESC got: must not answer the next command
    pending = asyncio.create_task(at.command("AT+CSQ", timeout=2))
    await line.heard(b"AT+CSQ\r")
    line.say(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n")
    assert (await pending).first("+CSQ") == "9,99"


async def test_command_with_urc_in_the_middle() -> None:
    async with channel() as (at, line, urcs):
        pending = asyncio.create_task(at.command("AT+CSQ", timeout=2))
        await line.heard(b"AT+CSQ\r")
        line.say(b'\r\n+CSQ: 17,99\r\n\r\n+CMTI: "SM",1\r\n\r\nOK\r\n')
        reply = await pending
        assert reply.ok
        assert reply.first("+CSQ") == "17,99"
        assert urcs == [Urc("+CMTI", '+CMTI: "SM",1')]


async def test_commands_run_one_at_a_time() -> None:
    async with channel() as (at, line, _):
        first = asyncio.create_task(at.command("AT+CGMI", timeout=2))
        second = asyncio.create_task(at.command("AT+CGMM", timeout=2))
        await line.heard(b"AT+CGMI\r")
        await asyncio.sleep(0.02)
        assert b"AT+CGMM" not in line.written  # not written while the first is open
        line.say(b"\r\nMaker\r\n\r\nOK\r\n")
        await line.heard(b"AT+CGMM\r")
        line.say(b"\r\nModel\r\n\r\nOK\r\n")
        assert (await first).texts == ["Maker"]
        assert (await second).texts == ["Model"]


async def test_late_answer_does_not_answer_the_next_command() -> None:
    async with channel() as (at, line, _):
        with pytest.raises(AtTimeout):
            await at.command("AT+COPS?", timeout=0.05)
        line.say(b'\r\n+COPS: 0,0,"Late",7\r\n\r\nOK\r\n')  # the modem was only slow
        pending = asyncio.create_task(at.command("AT+CSQ", timeout=2))
        await line.heard(b"AT+CSQ\r")
        line.say(b"\r\n+CSQ: 5,99\r\n\r\nOK\r\n")
        reply = await pending
        assert reply.first("+CSQ") == "5,99"


async def test_reply_without_ok_settles() -> None:
    async with channel() as (at, line, _):
        pending = asyncio.create_task(at.command("AT+CPIN?", timeout=2, complete_on="+CPIN"))
        await line.heard(b"AT+CPIN?\r")
        line.say(b"\r\n+CPIN: READY\r\n")
        reply = await pending
        assert reply.ok
        assert reply.first("+CPIN") == "READY"


async def test_send_pdu() -> None:
    async with channel() as (at, line, urcs):
        pending = asyncio.create_task(at.send_pdu(19, "0011AB", prompt_timeout=1, timeout=2))
        await line.heard(b"AT+CMGS=19\r")
        line.say(b"\r\n> ")
        await line.heard(b"0011AB\x1a")
        line.say(b"\r\n+ZDONR: 1\r\n\r\n+CMGS: 77\r\n\r\nOK\r\n")
        reply = await pending
        assert reply.first("+CMGS") == "77"
        assert [u.name for u in urcs] == ["+ZDONR"]


async def _at_the_prompt(
    at: AtChannel, line: Line
) -> tuple[asyncio.Future[None], asyncio.Task[Reply]]:
    """A send_pdu with a gate, stopped at the modem's prompt."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pending = asyncio.create_task(at.send_pdu(19, "0011AB", prompt_timeout=1, timeout=2, gate=gate))
    await line.heard(b"AT+CMGS=19\r")
    line.say(b"\r\n> ")
    return gate, pending


async def test_pdu_waits_for_the_gate_at_the_prompt() -> None:
    async with channel() as (at, line, _):
        gate, pending = await _at_the_prompt(at, line)
        await asyncio.sleep(0.02)
        assert b"0011AB" not in line.written  # the marker is not durable yet
        gate.set_result(None)
        await line.heard(b"0011AB\x1a")
        line.say(b"\r\n+CMGS: 5\r\n\r\nOK\r\n")
        assert (await pending).first("+CMGS") == "5"


async def test_a_failed_gate_cancels_the_prompt_and_sends_nothing() -> None:
    async with channel() as (at, line, _):
        gate, pending = await _at_the_prompt(at, line)
        gate.set_exception(ConnectionError("no ack from JetStream"))
        with pytest.raises(ConnectionError, match="no ack"):
            await pending
        assert line.written.endswith(b"\x1b")
        assert b"0011AB" not in line.written
        await _escape_answer_is_not_the_next_reply(at, line)


async def test_refused_before_prompt() -> None:
    async with channel() as (at, line, _):
        pending = asyncio.create_task(at.send_pdu(19, "0011AB", prompt_timeout=1, timeout=2))
        await line.heard(b"AT+CMGS=19\r")
        line.say(b"\r\n+CMS ERROR: 331\r\n")
        reply = await pending
        assert reply.status is Status.CMS_ERROR
        assert reply.code == 331
        assert b"0011AB" not in line.written


async def test_no_prompt_sends_escape_and_nothing_else() -> None:
    async with channel() as (at, line, _):
        with pytest.raises(NoPrompt):
            await at.send_pdu(19, "0011AB", prompt_timeout=0.05, timeout=2)
        assert line.written.endswith(b"\x1b")
        assert b"0011AB" not in line.written
        await _escape_answer_is_not_the_next_reply(at, line)


async def test_no_answer_after_pdu_is_a_send_timeout() -> None:
    async with channel() as (at, line, _):
        pending = asyncio.create_task(at.send_pdu(19, "0011AB", prompt_timeout=1, timeout=0.05))
        await line.heard(b"AT+CMGS=19\r")
        line.say(b"\r\n> ")
        with pytest.raises(SendTimeout):
            await pending


async def test_line_dropped_after_pdu_is_interrupted() -> None:
    async with channel() as (at, line, _):
        pending = asyncio.create_task(at.send_pdu(19, "0011AB", prompt_timeout=1, timeout=2))
        await line.heard(b"AT+CMGS=19\r")
        line.say(b"\r\n> ")
        await line.heard(b"\x1a")
        line.drop()
        with pytest.raises(SendInterrupted):
            await pending


async def test_line_dropped_fails_commands() -> None:
    async with channel() as (at, line, _):
        pending = asyncio.create_task(at.command("AT", timeout=2))
        await line.heard(b"AT\r")
        line.drop()
        with pytest.raises(AtClosed):
            await pending
        await at.wait_closed()
        with pytest.raises(AtClosed):
            await at.command("AT", timeout=2)


async def test_flush_writes_escape_then_ctrl_z() -> None:
    async with channel() as (at, line, _):
        await at.flush()
        assert bytes(line.written) == b"\x1b\x1a"


async def test_a_late_ok_before_the_prompt_is_no_send() -> None:
    """Seen in the multi-host minority-node scenario: the OK answering an ESC came after
    the line was quiet again, while the next AT+CMGS waited for its prompt. Taken as the
    answer to AT+CMGS, it made a message `sent` whose PDU was never written."""
    async with channel() as (at, line, _):
        pending = asyncio.create_task(at.send_pdu(19, "0011AB", prompt_timeout=1, timeout=2))
        await line.heard(b"AT+CMGS=19\r")
        line.say(b"\r\nOK\r\n")  # a stale OK, not this command's answer
        with pytest.raises(NoPrompt):
            await pending
        assert b"0011AB" not in line.written
        assert line.written.endswith(b"\x1b")  # the prompt, if it still comes, is cancelled
