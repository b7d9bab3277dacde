"""Each modem family's quirks, seen on the wire of its simulator profile (docs/modems.md)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from smsgate.config import SimConfig
from smsgate.pdu import Submit, decode, encode_submit
from smsgate.pdu.text_mode import pack_ussd, unpack_ussd
from smsgate_sim import PROFILES, Simulator

from .test_sim_support import Line, quiet

FAMILIES = sorted(set(PROFILES) - {"standard", "noprompt-space", "huawei", "wavecom"})
ALL = ["standard", "huawei", "wavecom", *FAMILIES]
PORT = {name: f"lte-{i}" for i, name in enumerate(ALL, start=1)}
SENDER = "+4930123456"


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(
        ports=len(ALL),
        part_time=0.0,
        delivery_delay=0.0,
        report_delay=0.0,
        ussd_delay=0.0,
        reset_time=0.05,
        control="",
        profiles={port: name for name, port in PORT.items()},  # type: ignore[misc]
    )
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def line(sim: Simulator, request: pytest.FixtureRequest) -> AsyncIterator[Line]:
    opened = await Line.open(sim.devices[PORT[request.param]])
    await quiet(opened)
    yield opened
    await opened.close()


def iccid_of(sim: Simulator, family: str) -> str:
    return sim.modem(PORT[family]).sim.iccid


async def reboot(line: Line, *urcs: bytes) -> None:
    """AT+CFUN=1,1, then read up to the last of the URCs the family prints while booting."""
    await line.at("AT+CFUN=1,1")
    await line.urc(b"RDY")
    for urc in urcs:
        await line.urc(urc)
    await quiet(line)


def test_every_profile_is_a_config_choice() -> None:
    from typing import get_args

    from smsgate.config import ModemProfile

    assert set(get_args(ModemProfile)) == set(PROFILES)


@pytest.mark.parametrize(
    ("line", "command", "answer"),
    [
        ("standard", "AT+CCID", "+CCID: {}"),
        ("quectel", "AT+QCCID", "+QCCID: {}"),
        ("simcom-sim800", "AT+CCID", "{}f"),
        ("simcom-sim7600", "AT+CICCID", "+ICCID: {}"),
        ("sierra", "AT!ICCID?", "!ICCID: {}"),
        ("telit", "AT#CCID", "#CCID: {}"),
        ("cinterion", "AT^SCID", "^SCID: {}"),
        ("neoway", "AT$MYCCID", '$MYCCID: "{}"'),
        ("longsung", "AT$MYCCID", '$MYCCID: "{}"'),
    ],
    indirect=["line"],
)
async def test_iccid_commands(
    sim: Simulator, line: Line, request: pytest.FixtureRequest, command: str, answer: str
) -> None:
    family = request.node.callspec.params["line"]
    expected = answer.format(iccid_of(sim, family))
    assert await line.at(command) == f"\r\n{expected}\r\n\r\nOK\r\n".encode()
    if command != "AT+CCID":
        assert (await line.at("AT+CCID")).endswith(b"ERROR\r\n")  # the standard one is not there


@pytest.mark.parametrize("line", ["zte"], indirect=True)
async def test_crsm_gives_the_raw_iccid(sim: Simulator, line: Line) -> None:
    reply = await line.at("AT+CRSM=176,12258,0,0,10")
    raw = re.search(rb'"([0-9A-F]{20})"', reply)
    assert raw is not None
    swapped = "".join(raw.group(1).decode()[i + 1 :: -1][:2] for i in range(0, 20, 2))
    assert swapped.rstrip("F") == iccid_of(sim, "zte")


@pytest.mark.parametrize("line", ["quectel"], indirect=True)
async def test_quectel(sim: Simulator, line: Line) -> None:
    assert await line.at("AT+CNMI=2,1,0,1,0") == b"\r\n+CMS ERROR: 303\r\n"  # no <ds>=1
    assert await line.at("AT+CNMI=2,1,0,2,0") == b"\r\nOK\r\n"
    await reboot(line, b"+QUSIM: 1")
    assert await line.at("AT+CPMS?") == b"\r\n+CMS ERROR: 314\r\n"  # SMS not ready yet
    await line.urc(b"+QIND: PB DONE")
    assert (await line.at("AT+CPMS?")).startswith(b"\r\n+CPMS:")
    await sim.inject("index zero", sender=SENDER, to_port=PORT["quectel"])
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",0'


@pytest.mark.parametrize("line", ["simcom-sim800"], indirect=True)
async def test_simcom_sim800(line: Line) -> None:
    assert await line.at("AT+CNMI=2,1,0,2,0") == b"\r\n+CMS ERROR: 303\r\n"  # reports as +CDS
    assert await line.at("AT+CNMI=2,1,0,1,0") == b"\r\nOK\r\n"
    await reboot(line, b"SMS Ready")
    assert await line.at('AT+CUSD=1,"*100#",15') == b"\r\nOK\r\n"
    answer = await line.urc(b"+CUSD:")
    match = re.fullmatch(rb'\+CUSD: 0,"([0-9A-F]+)",72', answer)
    assert match is not None
    assert bytes.fromhex(match.group(1).decode()).decode("utf-16-be").startswith("Your balance")


@pytest.mark.parametrize("line", ["simcom-sim7600"], indirect=True)
async def test_simcom_sim7600(line: Line) -> None:
    await reboot(line, b"+CPIN: READY", b"SMS DONE", b"PB DONE")
    assert (await line.at("AT+CPMS?")).startswith(b"\r\n+CPMS:")


@pytest.mark.parametrize("line", ["huawei"], indirect=True)
async def test_huawei_ussd_is_packed(line: Line) -> None:
    assert await line.at('AT+CUSD=1,"*100#",15') == b"\r\n+CME ERROR: 3\r\n"
    assert await line.at(f'AT+CUSD=1,"{pack_ussd("*100#")}",15') == b"\r\nOK\r\n"
    answer = await line.urc(b"+CUSD:")
    match = re.fullmatch(rb'\+CUSD: 0,"([0-9A-F]+)",15', answer)
    assert match is not None
    assert (unpack_ussd(match.group(1).decode()) or "").startswith("Your balance")


@pytest.mark.parametrize("line", ["wavecom"], indirect=True)
async def test_wavecom_asks_to_wait_after_boot(line: Line) -> None:
    await reboot(line, b"+WIND: 3")
    assert await line.at('AT+CPMS="SM"') == b"\r\n+CME ERROR: 515\r\n"
    await line.urc(b"+WIND: 4")
    assert (await line.at('AT+CPMS="SM"')).startswith(b"\r\n+CPMS:")


@pytest.mark.parametrize("line", ["zte"], indirect=True)
async def test_zte_starts_offline_and_floods(line: Line) -> None:
    await reboot(line)
    assert await line.at("AT+CFUN?") == b"\r\n+CFUN: 4\r\n\r\nOK\r\n"
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"
    assert await line.at("AT+CFUN=1") == b"\r\nOK\r\n"
    assert await line.at("AT+CPMS?") == b"\r\n+CMS ERROR: 314\r\n"  # the SIM is read again
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    await line.urc(b"+ZUSIMR:2")


@pytest.mark.parametrize("line", ["telit"], indirect=True)
async def test_telit(line: Line) -> None:
    await reboot(line, b"#QSS: 1")
    assert await line.at("AT+CPMS?") == b"\r\n+CMS ERROR: 314\r\n"
    await line.urc(b"#QSS: 3")
    [part] = encode_submit("+4915112345678", "telit prompt")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    assert await line.until(b">\r\n") == b"\r\n>\r\n"
    await line.write(part.pdu.encode() + b"\x1a")
    assert (await line.final()).startswith(b"\r\n+CMGS: ")


@pytest.mark.parametrize("line", ["ublox"], indirect=True)
async def test_ublox_sim_busy_for_everything(line: Line) -> None:
    await line.at("AT+CFUN=1,1")
    await line.urc(b"RDY")
    await line.at("ATE0")  # the link itself is always set up
    assert await line.at("AT+CMEE=1") == b"\r\nOK\r\n"
    assert await line.at("AT+CSQ") == b"\r\n+CME ERROR: 14\r\n"
    for _ in range(200):  # until the SIM is read: about a second
        if (await line.at("AT+CSQ")).startswith(b"\r\n+CSQ:"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("u-blox stayed busy")


@pytest.mark.parametrize("line", ["fibocom"], indirect=True)
async def test_fibocom_only_direct_indications(line: Line) -> None:
    assert await line.at("AT+CNMI?") == b"\r\n+CNMI: 1,0,0,0,0\r\n\r\nOK\r\n"
    assert await line.at("AT+CNMI=2,1,0,2,0") == b"\r\n+CMS ERROR: 303\r\n"
    assert await line.at("AT+CNMI=2,2,0,1,0") == b"\r\nOK\r\n"


@pytest.mark.parametrize("line", ["cinterion"], indirect=True)
async def test_cinterion(line: Line) -> None:
    await reboot(line, b"^SYSSTART")
    assert await line.at("AT+CNMI=2,1,0,2,0") == b"\r\n+CMS ERROR: 303\r\n"  # <bfr> only 1
    assert await line.at("AT+CNMI=2,1,0,2,1") == b"\r\nOK\r\n"


@pytest.mark.parametrize("line", ["neoway"], indirect=True)
async def test_neoway(sim: Simulator, line: Line) -> None:
    await reboot(line, b"MODEM:STARTUP", b"+PBREADY")
    await sim.inject("in MT", sender=SENDER, to_port=PORT["neoway"])
    urc = await line.urc(b"+CMTI:")
    assert urc.startswith(b'+CMTI: "MT",')
    assert (await line.at('AT+CPMS="MT"')).startswith(b"\r\n+CPMS:")
    assert b"+CMGR: 0," in await line.at(f"AT+CMGR={urc.rsplit(b',', 1)[1].decode()}")


@pytest.mark.parametrize("line", ["option"], indirect=True)
async def test_option_underscore_urcs(sim: Simulator, line: Line) -> None:
    await line.urc(b"_O")
    await sim.inject("zero", sender=SENDER, to_port=PORT["option"])
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",0'


@pytest.mark.parametrize("line", ["longsung"], indirect=True)
async def test_longsung_counts_from_zero(sim: Simulator, line: Line) -> None:
    await sim.inject("zero", sender=SENDER, to_port=PORT["longsung"])
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",0'


@pytest.mark.parametrize("line", ["ai-thinker"], indirect=True)
async def test_text_mode_only(sim: Simulator, line: Line) -> None:
    assert await line.at("AT+CMGF=0") == b"\r\nERROR\r\n"
    assert await line.at("AT+CMGF?") == b"\r\n+CMGF: 1\r\n\r\nOK\r\n"
    assert await line.at('AT+CSCS="UCS2"') == b"\r\nOK\r\n"
    assert await line.at("AT+CSDH=1") == b"\r\nOK\r\n"
    # One part of a concatenated message: TP-UDHI in AT+CSMP, the user data as hex.
    first, second = encode_submit("+4915112345678", "ж" * 100, concat_reference=7)
    for part in (first, second):
        message = decode(part.pdu)
        assert isinstance(message, Submit)
        udh = bytes([5, 0, 3, 7, 2, message.concat.sequence if message.concat else 0])
        user_data = udh + message.data
        assert await line.at(f"AT+CSMP={0x51},167,0,8") == b"\r\nOK\r\n"
        number = "+4915112345678".encode("utf-16-be").hex().upper()
        await line.write(f'AT+CMGS="{number}"\r'.encode())
        await line.until(b"> ")
        await line.write(user_data.hex().upper().encode() + b"\x1a")
        assert (await line.final()).startswith(b"\r\n+CMGS: ")
    sent = sim.sent()[-2:]
    assert [p.text for p in sent] == ["ж" * 67, "ж" * 33]
    assert [(p.reference, p.total, p.sequence) for p in sent] == [(7, 2, 1), (7, 2, 2)]
    # A concatenated part read back in text mode: <fo> with UDHI, the user data as hex.
    await sim.inject("ж" * 80, sender=SENDER, to_port=PORT["ai-thinker"])
    index = (await line.urc(b"+CMTI:")).rsplit(b",", 1)[1].decode()
    reply = await line.at(f"AT+CMGR={index}")
    header = re.search(rb"\+CMGR: ([^\r]*)\r\n([0-9A-F]+)\r\n", reply)
    assert header is not None, reply
    fields = header.group(1).split(b",")
    assert fields[0] == b'"REC UNREAD"'
    assert int(fields[-6]) & 0x40  # <fo>: TP-UDHI
    assert int(fields[-4]) == 8  # <dcs>: UCS-2
    assert int(fields[-1]) == len(bytes.fromhex(header.group(2).decode()))  # <length> = TP-UDL
