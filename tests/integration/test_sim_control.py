"""The HTTP control interface, over real HTTP to the real uvicorn server, seen on a real pty."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from smsgate.config import SimConfig
from smsgate.pdu import Deliver, decode
from smsgate_sim import Simulator

from .test_sim_support import Line, eventually, quiet


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimConfig(
        ports=2,
        part_time=0.0,
        delivery_delay=0.0,
        report_delay=0.0,
        reset_time=0.05,
        control="127.0.0.1:0",
    )
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    assert sim.control_url
    async with httpx.AsyncClient(base_url=sim.control_url) as client:
        yield client


@pytest.fixture
async def line(sim: Simulator) -> AsyncIterator[Line]:
    opened = await Line.open(sim.devices["lte-1"])
    await quiet(opened)
    yield opened
    await opened.close()


async def test_ports_and_devices(sim: Simulator, http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"ok": True, "ports": 2}
    assert (await http.get("/devices")).json() == sim.devices
    ports = (await http.get("/ports")).json()
    assert [p["name"] for p in ports] == ["lte-1", "lte-2"]
    one = (await http.get("/ports/lte-1")).json()
    modem = sim.modem("lte-1")
    assert one["msisdn"] == modem.sim.msisdn == "+15550100001"
    assert (one["imsi"], one["iccid"], one["imei"]) == (modem.sim.imsi, modem.sim.iccid, modem.imei)
    assert one["pts"].startswith("/dev/pts/")
    assert (one["plugged"], one["sim"], one["registration"]) == (True, "READY", 1)
    assert one["storage"] == {"SM": [0, 30], "ME": [0, 30], "SR": [0, 30]}
    assert (await http.get("/ports/nope")).status_code == 404


async def test_inject_reaches_the_modem(http: httpx.AsyncClient, line: Line) -> None:
    answer = await http.post(
        "/inject", json={"to_number": "+15550100001", "sender": "+4930123456", "text": "ж" * 100}
    )
    assert answer.json() == {"port": "lte-1", "parts": 2}
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",1'
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",2'
    pdu = (await line.at("AT+CMGR=2")).split(b"\r\n")[2].decode()
    message = decode(pdu)
    assert isinstance(message, Deliver)
    assert message.concat is not None
    assert message.concat.sequence == 2
    stats = (await http.get("/ports/lte-1/stats")).json()
    assert stats["inbound_delivered"] == 2
    bad = await http.post("/inject", json={"to_port": "lte-1", "sender": "x"})
    assert bad.status_code == 400
    assert "text" in bad.json()["error"]
    missing = await http.post("/inject", json={"to_port": "lte-9", "sender": "1", "text": "hi"})
    assert missing.status_code == 404


async def test_inject_in_reverse_order(http: httpx.AsyncClient, line: Line) -> None:
    await http.post(
        "/inject",
        json={"to_port": "lte-1", "sender": "+49301", "text": "x" * 400, "order": "reverse"},
    )
    for index in (1, 2, 3):
        assert await line.urc(b"+CMTI:") == f'+CMTI: "SM",{index}'.encode()
    first = decode((await line.at("AT+CMGR=1")).split(b"\r\n")[2].decode())
    assert isinstance(first, Deliver)
    assert first.concat is not None
    assert first.concat.sequence == 3


async def test_faults_on_and_off(sim: Simulator, http: httpx.AsyncClient, line: Line) -> None:
    answer = await http.post("/ports/lte-1/faults", json={"deregistered": True, "signal": 5})
    assert answer.json()["deregistered"] is True
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 0,2\r\n\r\nOK\r\n"
    assert await line.at("AT+CSQ") == b"\r\n+CSQ: 5,99\r\n\r\nOK\r\n"
    assert (await http.delete("/ports/lte-1/faults")).json()["deregistered"] is False
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    everywhere = await http.post("/faults", json={"send_error_rate": 0.5})
    assert {f["send_error_rate"] for f in everywhere.json().values()} == {0.5}
    await http.delete("/faults")
    assert all(m.faults.send_error_rate == 0 for m in sim.modems.values())
    bad = await http.post("/ports/lte-1/faults", json={"hung": "yes"})
    assert bad.status_code == 400
    unknown = await http.post("/ports/lte-1/faults", json={"on_fire": True})
    assert unknown.status_code == 400


async def test_unplug_replug_reset(sim: Simulator, http: httpx.AsyncClient) -> None:
    device = sim.devices["lte-2"]
    assert (await http.post("/ports/lte-2/unplug")).json()["plugged"] is False
    replugged = (await http.post("/ports/lte-2/replug")).json()
    assert (replugged["plugged"], replugged["device"]) == (True, device)
    line = await Line.open(device)
    try:
        await http.post("/ports/lte-2/faults", json={"hung": True})
        await http.post("/ports/lte-2/reset")
        assert await line.until(b"RDY\r\n") == b"\r\nRDY\r\n"
        assert await line.at("AT") == b"AT\r\r\nOK\r\n"
    finally:
        await line.close()
    assert (await http.get("/ports/lte-2")).json()["stats"]["resets"] == 1


async def test_urc_and_garbage_on_demand(http: httpx.AsyncClient, line: Line) -> None:
    await http.post("/ports/lte-1/urc", json={"text": "^RSSI: 20"})
    assert await line.urc(b"^RSSI") == b"^RSSI: 20"
    await http.post("/ports/lte-1/garbage", json={"size": 5})
    answer = await line.at("AT")
    assert len(answer) == 5 + len(b"\r\nOK\r\n")


async def test_sent_log_and_stats(sim: Simulator, http: httpx.AsyncClient, line: Line) -> None:
    await line.send_text("+4915112345678", "logged " * 30)
    sent = (await http.get("/sent")).json()
    assert [(p["port"], p["to"], p["mr"], p["sequence"], p["total"]) for p in sent] == [
        ("lte-1", "+4915112345678", 0, 1, 2),
        ("lte-1", "+4915112345678", 1, 2, 2),
    ]
    assert sent[0]["time"] <= sent[1]["time"]
    assert (await http.get("/sent", params={"port": "lte-2"})).json() == []
    assert len((await http.get("/ports/lte-1/sent")).json()) == 2
    later = (await http.get("/sent", params={"since": sent[1]["time"]})).json()
    assert [p["mr"] for p in later] == [1]
    await eventually(lambda: sim.network.stats.delivered_outside == 2)
    totals = (await http.get("/stats")).json()
    assert totals["modems"]["parts_sent"] == 2
    assert totals["network"]["delivered_outside"] == 2


async def test_autoreply_routes(http: httpx.AsyncClient, line: Line) -> None:
    assert (await http.get("/autoreply")).json() == {}
    await http.put("/autoreply/999", json={"text": "you said {text}"})
    assert (await http.get("/autoreply")).json() == {"999": "you said {text}"}
    await line.send_text("999", "hi")
    await line.urc(b"+CMTI:")
    message = decode((await line.at("AT+CMGR=1")).split(b"\r\n")[2].decode())
    assert isinstance(message, Deliver)
    assert (message.sender, message.text) == ("999", "you said hi")
    assert (await http.delete("/autoreply/999")).json() == {}
