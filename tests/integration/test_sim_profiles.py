"""Quirk profiles: what differs on the wire from one modem family to another."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from smsgate.config import SimConfig
from smsgate.pdu import encode_submit
from smsgate_sim import Simulator

from .test_sim_support import Line, quiet


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(
        ports=4,
        part_time=0.0,
        delivery_delay=0.0,
        control="",
        profiles={"lte-2": "noprompt-space", "lte-3": "huawei", "lte-4": "wavecom"},
    )
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def line(sim: Simulator, request: pytest.FixtureRequest) -> AsyncIterator[Line]:
    opened = await Line.open(sim.devices[request.param])
    await quiet(opened)
    yield opened
    await opened.close()


@pytest.mark.parametrize(
    ("line", "prompt"), [("lte-1", b"\r\n> "), ("lte-2", b"\r\n>\r\n")], indirect=["line"]
)
async def test_prompt(line: Line, prompt: bytes) -> None:
    [part] = encode_submit("+4915112345678", "prompt style")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    assert await line.until(prompt) == prompt
    await line.write(part.pdu.encode() + b"\x1a")
    assert (await line.final()).startswith(b"\r\n+CMGS: ")


@pytest.mark.parametrize("line", ["lte-3"], indirect=True)
async def test_huawei(sim: Simulator, line: Line) -> None:
    assert await line.at("AT+BOGUS") == b"\r\nCOMMAND NOT SUPPORT\r\n"
    assert await line.at("AT+CCID") == b"\r\nCOMMAND NOT SUPPORT\r\n"
    iccid = sim.modem("lte-3").sim.iccid
    assert await line.at("AT^ICCID?") == f"\r\n^ICCID: {iccid}\r\n\r\nOK\r\n".encode()
    assert await line.at("AT^CURC=0") == b"\r\nOK\r\n"
    assert await line.at("AT+CMGF=9") == b"\r\nERROR\r\n"  # known command, bad argument
    await sim.inject("index zero", sender="+4930123456", to_port="lte-3")
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",0'  # Huawei counts from 0
    assert (await line.at("AT+CMGR=0")).startswith(b"\r\n+CMGR: 0,,")


@pytest.mark.parametrize("line", ["lte-4"], indirect=True)
async def test_wavecom(sim: Simulator, line: Line) -> None:
    await line.write(b"AT+CPIN?\r")
    assert await line.until(b"+CPIN: READY\r\n") == b"\r\n+CPIN: READY\r\n"
    assert await line.at("AT") == b"\r\nOK\r\n"  # no OK was owed for AT+CPIN?
    iccid = sim.modem("lte-4").sim.iccid
    assert await line.at("AT+CCID") == f'\r\n+CCID: "{iccid}"\r\n\r\nOK\r\n'.encode()
    assert await line.at("AT^ICCID?") == b"\r\nERROR\r\n"


@pytest.mark.parametrize("line", ["lte-1"], indirect=True)
async def test_standard_rejects_vendor_commands(line: Line) -> None:
    assert await line.at("AT^CURC=0") == b"\r\nERROR\r\n"
    assert await line.at("AT^ICCID?") == b"\r\nERROR\r\n"
