"""Messages and reports routed to the TE (+CMT/+CDS) under AT+CSMS=1, over a real pty:
one at a time, each awaiting AT+CNMA; one left unacknowledged is refused to the network,
routing to the TE is switched off (3GPP TS 27.005), and the SMSC's later retry finds the
report dropped unless the TE switched routing on again."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from smsgate.config import SimConfig
from smsgate.pdu import StatusReport, decode
from smsgate_sim import Simulator

from .test_sim_session import FAST
from .test_sim_support import Line, eventually, quiet

CDS = re.compile(rb"\+CDS: \d+\r\n[0-9A-F]+\r\n")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    # Long enough that a test's own pace never runs into it, short enough to wait out.
    fast = {**FAST, "cnma_timeout": 2.0, "smsc_retry": 0.5}
    async with Simulator(SimConfig(ports=1, **fast)) as simulator:  # type: ignore[arg-type]
        yield simulator


@pytest.fixture
async def line(sim: Simulator) -> AsyncIterator[Line]:
    opened = await Line.open(sim.devices["lte-1"])
    await quiet(opened)
    yield opened
    await opened.close()


def report_mr(cds: bytes) -> int:
    report = decode(cds.split(b"\r\n")[-2].decode())
    assert isinstance(report, StatusReport)
    return report.message_reference


async def test_each_report_waits_for_the_one_before_to_be_acknowledged(
    sim: Simulator, line: Line
) -> None:
    modem = sim.modem("lte-1")
    assert await line.at("AT+CSMS=1") == b"\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"
    assert b"+CSMS: 1,1,1,1" in await line.at("AT+CSMS?")
    await line.at("AT+CNMI=2,1,0,1,0")
    first, second = [
        (await line.send_text("+4915112345678", text, status_report=True))[0]
        for text in ("one", "two")
    ]
    assert report_mr(await line.until(CDS)) == first
    # The second report waits at the network while the first is unacknowledged.
    await eventually(lambda: sim.network.held(modem) == 1)
    assert CDS.search(line.buffer) is None
    assert await line.at("AT+CNMA") == b"\r\nOK\r\n"
    assert report_mr(await line.until(CDS)) == second
    assert await line.at("AT+CNMA") == b"\r\nOK\r\n"
    assert (modem.stats.acknowledged, modem.stats.unacknowledged) == (2, 0)
    # Nothing awaits an acknowledgement now.
    assert await line.at("AT+CNMA") == b"\r\n+CMS ERROR: 340\r\n"


async def test_an_unacknowledged_report_switches_routing_off_and_is_lost_if_it_stays_off(
    sim: Simulator, line: Line
) -> None:
    """What an agent that dies between the +CDS and its AT+CNMA leaves behind."""
    modem = sim.modem("lte-1")
    await line.at("AT+CSMS=1")
    await line.at("AT+CNMI=2,1,0,1,0")
    await line.send_text("+4915112345678", "never acknowledged", status_report=True)
    await line.until(CDS)
    await eventually(lambda: modem.stats.unacknowledged == 1)
    assert b"+CNMI: 2,0,0,0,0" in await line.at("AT+CNMI?")
    # The SMSC tries again; with <ds> still 0 the modem drops it.
    await eventually(lambda: modem.stats.reports_discarded == 1)
    assert sim.network.held(modem) == 0
    assert modem.stats.reports_delivered == 1  # the retry, dropped


async def test_a_refused_report_comes_again_once_the_te_routes_reports_again(
    sim: Simulator, line: Line
) -> None:
    """An agent restarted in time sets AT+CNMI again and gets the SMSC's retry."""
    modem = sim.modem("lte-1")
    await line.at("AT+CSMS=1")
    await line.at("AT+CNMI=2,1,0,1,0")
    [mr] = await line.send_text("+4915112345678", "acknowledged late", status_report=True)
    await line.until(CDS)
    await eventually(lambda: modem.stats.unacknowledged == 1)
    await line.at("AT+CNMI=2,1,0,1,0")
    assert report_mr(await line.until(CDS)) == mr
    assert await line.at("AT+CNMA") == b"\r\nOK\r\n"
    assert (modem.stats.acknowledged, modem.stats.reports_discarded) == (1, 0)


async def test_without_csms_1_reports_need_no_acknowledgement(sim: Simulator, line: Line) -> None:
    """Service 0: the modem acknowledges each report to the network as it routes it, so a
    report the TE does not read is gone."""
    modem = sim.modem("lte-1")
    assert b"+CSMS: 0,1,1,1" in await line.at("AT+CSMS?")
    await line.at("AT+CNMI=2,1,0,1,0")
    mrs = [
        (await line.send_text("+4915112345678", text, status_report=True))[0]
        for text in ("one", "two")
    ]
    assert [report_mr(await line.until(CDS)) for _ in mrs] == mrs
    assert await line.at("AT+CNMA") == b"\r\n+CMS ERROR: 340\r\n"
    assert modem.stats.unacknowledged == 0
