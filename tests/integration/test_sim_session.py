"""A modem session as an SMS daemon has it, byte for byte, over a real pty and a real TCP socket."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from smsgate.config import SimConfig
from smsgate.pdu import Deliver, StatusReport, decode, encode_submit
from smsgate_sim import CARRIER_BALANCE_REPLY, Simulator

from .test_sim_support import Line, quiet

FAST = {
    "part_time": 0.01,
    "delivery_delay": 0.0,
    "report_delay": 0.01,
    "ussd_delay": 0.0,
    "reset_time": 0.05,
    "control": "",
    "seed": 7,
}


@pytest.fixture(params=["pty", "tcp"])
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Simulator]:
    config = SimConfig(
        ports=3,
        transport=request.param,
        map_file=str(tmp_path / "devices.json"),
        autoreply={"10086": CARRIER_BALANCE_REPLY, "12345": "echo: {text}"},
        **FAST,  # type: ignore[arg-type]
    )
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def line(sim: Simulator) -> AsyncIterator[Line]:
    opened = await Line.open(sim.devices["lte-1"])
    yield opened
    await opened.close()


def read_map(path: str) -> dict[str, str]:
    result: dict[str, str] = json.loads(Path(path).read_text())
    return result


def is_link(path: str) -> bool:
    return os.path.islink(path)


async def test_map_file_and_devices(sim: Simulator) -> None:
    assert sim.config.map_file
    written = read_map(sim.config.map_file)
    assert written == sim.devices
    assert list(written) == ["lte-1", "lte-2", "lte-3"]
    if sim.config.transport == "pty":
        assert all(is_link(device) for device in written.values())
    else:
        assert all(device.startswith("socket://127.0.0.1:") for device in written.values())


async def test_echo_is_on_until_ate0(line: Line) -> None:
    assert await line.at("AT") == b"AT\r\r\nOK\r\n"
    assert await line.at("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert await line.at("AT") == b"\r\nOK\r\n"
    assert await line.at("ATE1") == b"\r\nOK\r\n"
    assert await line.at("AT") == b"AT\r\r\nOK\r\n"


async def test_identity_signal_and_registration(sim: Simulator, line: Line) -> None:
    await quiet(line)
    modem = sim.modem("lte-1")
    assert await line.at("AT+CGSN") == f"\r\n{modem.imei}\r\n\r\nOK\r\n".encode()
    assert await line.at("AT+CIMI") == f"\r\n{modem.sim.imsi}\r\n\r\nOK\r\n".encode()
    assert await line.at("AT+CCID") == f"\r\n+CCID: {modem.sim.iccid}\r\n\r\nOK\r\n".encode()
    assert await line.at("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert re.fullmatch(rb"\r\n\+CSQ: (\d+),99\r\n\r\nOK\r\n", await line.at("AT+CSQ"))
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert await line.at("AT+CEREG?") == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    assert await line.at("AT+COPS?") == b'\r\n+COPS: 0,0,"SIMNET",7\r\n\r\nOK\r\n'
    assert await line.at("AT+CSCA?") == b'\r\n+CSCA: "+15550000000",145\r\n\r\nOK\r\n'
    assert await line.at("AT+BOGUS") == b"\r\nERROR\r\n"


async def test_send_shows_prompt_then_cmgs(sim: Simulator, line: Line) -> None:
    await quiet(line)
    [part] = encode_submit("+4915112345678", "Hello from the farm")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    assert await line.until(b"> ") == b"\r\n> "
    await line.write(part.pdu.encode() + b"\x1a")
    assert await line.final() == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    [sent] = sim.sent("lte-1")
    assert (sent.to, sent.text, sent.mr, sent.port) == ("+4915112345678", part.text, 0, "lte-1")
    assert sim.modem("lte-1").stats.pdus_received == 1


async def test_echoed_pdu_when_echo_is_on(line: Line) -> None:
    [part] = encode_submit("+4915112345678", "echo")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    assert await line.until(b"> ") == f"AT+CMGS={part.tpdu_length}\r\r\n> ".encode()
    await line.write(part.pdu.encode() + b"\x1a")
    assert await line.final() == part.pdu.encode() + b"\r\n+CMGS: 0\r\n\r\nOK\r\n"


async def test_wrong_length_and_malformed_pdu_are_rejected(sim: Simulator, line: Line) -> None:
    await quiet(line)
    [part] = encode_submit("+4915112345678", "length matters")
    await line.write(f"AT+CMGS={part.tpdu_length + 1}\r".encode())
    await line.until(b"> ")
    await line.write(part.pdu.encode() + b"\x1a")
    assert await line.final() == b"\r\n+CMS ERROR: 304\r\n"
    await line.write(b"AT+CMGS=5\r")
    await line.until(b"> ")
    await line.write(b"0011000B91\x1a")
    assert await line.final() == b"\r\n+CMS ERROR: 304\r\n"
    assert sim.modem("lte-1").stats.pdus_malformed == 2
    assert sim.sent() == []


async def test_escape_cancels_the_prompt(sim: Simulator, line: Line) -> None:
    await quiet(line)
    [part] = encode_submit("+4915112345678", "never mind")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    await line.until(b"> ")
    await line.write(part.pdu.encode() + b"\x1b")
    assert await line.final() == b"\r\nOK\r\n"
    assert await line.at("AT") == b"\r\nOK\r\n"
    assert sim.sent() == []


async def test_inbound_cmti_then_cmgr_then_cmgd(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await sim.inject("Your code is 4711", sender="+4930123456", to_port="lte-1")
    assert await line.until(re.compile(rb'\+CMTI: "SM",\d+\r\n')) == b'\r\n+CMTI: "SM",1\r\n'
    answer = await line.at("AT+CMGR=1")
    match = re.fullmatch(rb"\r\n\+CMGR: 0,,(\d+)\r\n([0-9A-F]+)\r\n\r\nOK\r\n", answer)
    assert match, answer
    pdu = match.group(2).decode()
    message = decode(pdu)
    assert isinstance(message, Deliver)
    assert (message.sender, message.text) == ("+4930123456", "Your code is 4711")
    assert int(match.group(1)) == len(pdu) // 2 - 1 - int(pdu[:2], 16)
    assert (await line.at("AT+CMGR=1")).startswith(b"\r\n+CMGR: 1,,")  # now read
    assert await line.at("AT+CMGD=1") == b"\r\nOK\r\n"
    assert await line.at("AT+CMGR=1") == b"\r\nOK\r\n"  # empty slot
    assert await line.at("AT+CMGR=99") == b"\r\n+CMS ERROR: 321\r\n"


async def test_cmt_when_cnmi_routes_directly(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await line.at("AT+CNMI=2,2,0,0,0")
    await sim.inject("straight through", sender="+4930123456", to_port="lte-1")
    header = await line.until(re.compile(rb"\+CMT: ,\d+\r\n"))
    pdu = (await line.until(b"\r\n")).strip().decode()
    assert int(header.split(b",")[1]) == len(pdu) // 2 - 1 - int(pdu[:2], 16)
    message = decode(pdu)
    assert isinstance(message, Deliver)
    assert message.text == "straight through"
    assert await line.at('AT+CPMS="SM"') == b"\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n"


async def test_status_report_as_cds_matches_the_mr(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await line.at("AT+CNMI=2,1,0,1,0")
    sim.modem("lte-1").next_mr = 41
    [mr] = await line.send_text("+4915112345678", "report me", status_report=True)
    assert mr == 41
    header = await line.until(re.compile(rb"\+CDS: \d+\r\n"))
    pdu = (await line.until(b"\r\n")).strip().decode()
    assert int(header.split(b": ")[1]) == len(pdu) // 2 - 1 - int(pdu[:2], 16)
    report = decode(pdu)
    assert isinstance(report, StatusReport)
    assert (report.message_reference, report.recipient, report.status) == (41, "+4915112345678", 0)


async def test_status_report_stored_in_sr_with_cdsi(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await line.at("AT+CNMI=2,1,0,2,0")
    [mr] = await line.send_text("+4915112345678", "store the report", status_report=True)
    assert await line.until(re.compile(rb'\+CDSI: "SR",\d+\r\n')) == b'\r\n+CDSI: "SR",1\r\n'
    assert await line.at('AT+CPMS="SR"') == b"\r\n+CPMS: 1,30,0,30,0,30\r\n\r\nOK\r\n"
    answer = await line.at("AT+CMGR=1")
    report = decode(answer.split(b"\r\n")[2].decode())
    assert isinstance(report, StatusReport)
    assert report.message_reference == mr


async def test_no_report_without_srr(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await line.at("AT+CNMI=2,1,0,1,0")
    await line.send_text("+4915112345678", "no report please")
    await sim.inject("marker", sender="+4930123456", to_port="lte-1")
    # The next thing on the line is the injected SMS, not a report.
    assert b"+CDS" not in await line.urc(b"+CMTI")


async def test_message_references_wrap_at_256(sim: Simulator, line: Line) -> None:
    await quiet(line)
    sim.modem("lte-1").next_mr = 254
    assert await line.send_text("+4915112345678", "x") == [254]
    assert await line.send_text("+4915112345678", "y") == [255]
    assert await line.send_text("+4915112345678", "z") == [0]
    assert [p.mr for p in sim.sent("lte-1")] == [254, 255, 0]


async def test_sim_to_sim_multipart_keeps_concat_info(sim: Simulator, line: Line) -> None:
    await quiet(line)
    receiver = await Line.open(sim.devices["lte-2"])
    try:
        await quiet(receiver)
        text = "Part of a long message between two virtual SIMs. " * 8
        references = await line.send_text(sim.numbers["lte-2"], text, concat_reference=77)
        assert len(references) == 3
        for index in (1, 2, 3):
            assert await receiver.until(re.compile(rb'\+CMTI: "SM",\d\r\n')) == (
                f'\r\n+CMTI: "SM",{index}\r\n'.encode()
            )
        listing = await receiver.at("AT+CMGL=4")
        pdus = re.findall(rb"\+CMGL: \d+,0,,\d+\r\n([0-9A-F]+)", listing)
        messages = [decode(p.decode()) for p in pdus]
        assert all(isinstance(m, Deliver) for m in messages)
        delivers = [m for m in messages if isinstance(m, Deliver)]
        assert {m.sender for m in delivers} == {sim.numbers["lte-1"]}
        concats = [m.concat for m in delivers]
        assert [(c.reference, c.total, c.sequence) for c in concats if c] == [
            (77, 3, 1),
            (77, 3, 2),
            (77, 3, 3),
        ]
        assert "".join(m.text for m in delivers) == text
        assert sim.modem("lte-2").stats.inbound_delivered == 3
    finally:
        await receiver.close()


async def test_carrier_autoreply_gives_result_report_and_multipart_inbound(
    sim: Simulator, line: Line
) -> None:
    await quiet(line)
    await line.at("AT+CNMI=2,1,0,1,0")
    [mr] = await line.send_text("10086", "YE", status_report=True)
    # The report and the three parts of the answer race each other, as on a real network.
    received = await line.lines_until(
        lambda seen: (
            seen.count(b"+CMTI") == 3 and re.search(rb"\+CDS: \d+\r\n\w+\r\n", seen) is not None
        )
    )
    report = re.search(rb"\+CDS: \d+\r\n([0-9A-F]+)", received)
    assert report
    decoded = decode(report.group(1).decode())
    assert isinstance(decoded, StatusReport)
    assert decoded.message_reference == mr
    listing = await line.at("AT+CMGL=4")
    parts = [decode(p.decode()) for p in re.findall(rb"\r\n([0-9A-F]{20,})", listing)]
    delivers = [p for p in parts if isinstance(p, Deliver)]
    assert {d.sender for d in delivers} == {"10086"}
    assert "".join(d.text for d in delivers) == CARRIER_BALANCE_REPLY
    assert len(delivers) == 3


async def test_autoreply_template_echoes_the_text(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await line.send_text("12345", "ping")
    await line.urc(b"+CMTI")
    message = decode((await line.at("AT+CMGR=1")).split(b"\r\n")[2].decode())
    assert isinstance(message, Deliver)
    assert message.text == "echo: ping"


async def test_ussd_balance(line: Line) -> None:
    await quiet(line)
    assert await line.at('AT+CUSD=1,"*100#",15') == b"\r\nOK\r\n"
    urc = await line.until(re.compile(rb"\+CUSD: [^\r]*\r\n"))
    assert urc == b'\r\n+CUSD: 0,"Your balance is 12.50 USD, valid until 31.12.2030.",15\r\n'


async def test_storage_write_list_and_delete(sim: Simulator, line: Line) -> None:
    await quiet(line)
    [part] = encode_submit("+4915112345678", "draft")
    await line.write(f"AT+CMGW={part.tpdu_length}\r".encode())
    await line.until(b"> ")
    await line.write(part.pdu.encode() + b"\x1a")
    assert await line.final() == b"\r\n+CMGW: 1\r\n\r\nOK\r\n"
    await sim.inject("one", sender="+4930123456", to_port="lte-1")
    await line.urc(b"+CMTI")
    assert (await line.at("AT+CMGL=2")).startswith(b"\r\n+CMGL: 1,2,,")
    assert (await line.at("AT+CMGL")).startswith(b"\r\n+CMGL: 2,0,,")
    assert await line.at("AT+CMGL=0") == b"\r\nOK\r\n"  # listing marked it read
    assert await line.at("AT+CPMS?") == b'\r\n+CPMS: "SM",2,30,"SM",2,30,"SM",2,30\r\n\r\nOK\r\n'
    assert await line.at("AT+CMGD=1,1") == b"\r\nOK\r\n"  # read ones only
    assert await line.at("AT+CMGD=?") == b"\r\n+CMGD: (1),(0-4)\r\n\r\nOK\r\n"
    assert await line.at("AT+CMGD=0,4") == b"\r\nOK\r\n"
    assert await line.at("AT+CMGL=4") == b"\r\nOK\r\n"


async def test_reset_restarts_with_default_settings(sim: Simulator, line: Line) -> None:
    await quiet(line)
    assert await line.at("AT+CFUN=1,1") == b"\r\nOK\r\n"
    assert await line.until(b"RDY\r\n") == b"\r\nRDY\r\n"
    assert await line.at("AT") == b"AT\r\r\nOK\r\n"  # echo is back on
    assert sim.modem("lte-1").stats.resets == 1


async def test_text_mode_send_and_read(sim: Simulator, line: Line) -> None:
    await quiet(line)
    await line.at("AT+CMGF=1")
    await line.write(b'AT+CMGS="+4915112345678"\r')
    await line.until(b"> ")
    await line.write(b"plain text\x1a")
    assert await line.final() == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert sim.sent("lte-1")[0].text == "plain text"
    await sim.inject("你好", sender="+8613800138000", to_port="lte-1")
    await line.urc(b"+CMTI")
    answer = await line.at("AT+CMGR=1")
    assert re.fullmatch(
        rb'\r\n\+CMGR: "REC UNREAD","\+8613800138000",,"\d\d/\d\d/\d\d,\d\d:\d\d:\d\d[+-]\d\d"'
        rb"\r\n4F60597D\r\n\r\nOK\r\n",
        answer,
    ), answer
