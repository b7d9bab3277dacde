"""The modem's logic against scripted byte transcripts: quirks the simulator does not have.

`Scripted` plays a modem from a table of answers (bytes as a real modem would write them),
so each test states exactly what the modem says and checks what the Modem does with it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from smsgate.config import AgentPort
from smsgate.pdu import Deliver, StatusReport, encode_deliver, encode_status_report
from smsgate_agent.at_parser import Line, Reply, Status
from smsgate_agent.link import ModemInfo, ModemStatus, ModemTimings
from smsgate_agent.modem import Modem
from smsgate_agent.replies import (
    choose_storage,
    dbm_from_csq,
    decode_ussd,
    normalise_iccid,
    parse_registration,
    parse_storages,
    registration_name,
)
from smsgate_agent.transport import TransportError

FAST = ModemTimings(
    poll_interval=3600,
    sweep_interval=3600,
    prompt_timeout=0.3,
    probe_timeout=0.2,
    probe_tries=2,
    reset_wait=0.01,
    busy_wait=5.0,
    busy_delay=(0.01, 0.02),
    down_delay=(0.01, 0.05),
    retry_delay=(0.01, 0.02),
    urc_poll_gap=0.0,
    settle_time=0.05,
    quiet_time=0.01,
)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DELIVER = encode_deliver("+4917612345678", "hello", timestamp=T0, smsc="+491710760000")
REPORT = encode_status_report(
    42, "+4917612345678", timestamp=T0, discharge_time=T0, status=0, smsc="+491710760000"
)

Answer = bytes | Callable[[str], bytes | None] | None

STANDARD: dict[str, Answer] = {
    "AT": b"\r\nOK\r\n",
    "ATZ": b"\r\nOK\r\n",
    "ATE0": b"\r\nOK\r\n",
    "AT+CMEE=1": b"\r\nOK\r\n",
    "AT+CPIN?": b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
    "AT+CMGF=0": b"\r\nOK\r\n",
    "AT+CPMS=?": b'\r\n+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")\r\n\r\nOK\r\n',
    'AT+CPMS="SM","SM","SM"': b"\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n",
    'AT+CPMS="SM"': b"\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n",
    'AT+CPMS="SR"': b"\r\n+CPMS: 1,30,0,30,0,30\r\n\r\nOK\r\n",
    "AT+CNMI=2,1,0,2,0": b"\r\nOK\r\n",
    "AT+CSMP=17,167,0,0": b"\r\nOK\r\n",
    "AT+CSCA?": b'\r\n+CSCA: "+491710760000",145\r\n\r\nOK\r\n',
    "AT+CSMS?": b"\r\n+CSMS: 0,1,1,1\r\n\r\nOK\r\n",
    "AT+CIMI": b"\r\n262011234567890\r\n\r\nOK\r\n",
    "AT+CGSN": b"\r\n356938035643809\r\n\r\nOK\r\n",
    "AT+COPS=3,0": b"\r\nOK\r\n",
    "AT+CGMI": b"\r\nQuectel\r\n\r\nOK\r\n",
    "AT+CGMM": b"\r\nEC25\r\n\r\nOK\r\n",
    "AT+CCID": b"\r\n+CCID: 89490200001234567890\r\n\r\nOK\r\n",
    "AT+CREG?": b"\r\n+CREG: 0,1\r\n\r\nOK\r\n",
    "AT+CEREG?": b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n",
    "AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
    "AT+COPS?": b'\r\n+COPS: 0,0,"Telekom.de",7\r\n\r\nOK\r\n',
    "AT+CMGL=4": b"\r\nOK\r\n",
    "AT+CMMS=2": b"\r\nOK\r\n",
}


@dataclass
class Scripted:
    """A modem played from a table: command -> bytes (or a function, or None to stay silent)."""

    answers: dict[str, Answer] = field(default_factory=lambda: dict(STANDARD))
    commands: list[str] = field(default_factory=list)
    pdus: list[str] = field(default_factory=list)
    cmgs: list[bytes] = field(default_factory=list)  # answers to successive PDUs
    prompt: bytes = b"\r\n> "
    opens: int = 0
    unplugged: bool = False
    link: ScriptedLink | None = None

    async def open(self, device: str, baudrate: int) -> ScriptedLink:
        if self.unplugged:
            raise TransportError(f"{device}: no such device")
        self.opens += 1
        self.link = ScriptedLink(self)
        return self.link

    def emit(self, data: bytes) -> None:
        assert self.link is not None
        self.link.incoming.put_nowait(data)

    def answer(self, command: str) -> bytes | None:
        self.commands.append(command)
        if command.upper().startswith("AT+CMGS="):
            return self.prompt
        found = self.answers.get(command, b"\r\nERROR\r\n")
        return found(command) if callable(found) else found

    def answer_pdu(self, pdu: str) -> bytes:
        self.pdus.append(pdu)
        if self.cmgs:
            return self.cmgs.pop(0)
        return f"\r\n+CMGS: {len(self.pdus) % 256}\r\n\r\nOK\r\n".encode()


class ScriptedLink:
    """The transport end of a Scripted modem."""

    def __init__(self, modem: Scripted) -> None:
        self.modem = modem
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.buffer = bytearray()
        self.in_prompt = False
        self.closed = False

    async def read(self) -> bytes:
        data = await self.incoming.get()
        if data is None:
            raise TransportError("unplugged")
        return data

    async def write(self, data: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self.closed:
            raise TransportError("closed")
        self.buffer += data
        while self.buffer:
            if self.in_prompt:
                ends = [i for i in (self.buffer.find(b"\x1a"), self.buffer.find(b"\x1b")) if i >= 0]
                if not ends:
                    return
                end = min(ends)
                body, cancelled = bytes(self.buffer[:end]), self.buffer[end] == 0x1B
                del self.buffer[: end + 1]
                self.in_prompt = False
                if cancelled:
                    self.modem.commands.append("<ESC>")
                    self.incoming.put_nowait(b"\r\nOK\r\n")
                else:
                    self.incoming.put_nowait(self.modem.answer_pdu(body.decode()))
                continue
            end = self.buffer.find(b"\r")
            if end < 0:
                if bytes(self.buffer) in (b"\x1b", b"\x1a"):
                    self.modem.commands.append("<ESC>" if self.buffer == b"\x1b" else "<^Z>")
                    self.buffer.clear()
                return
            line = self.buffer[:end].decode().strip("\x1a\x1b")
            del self.buffer[: end + 1]
            reply = self.modem.answer(line)
            if line.upper().startswith("AT+CMGS=") and reply is not None:
                self.in_prompt = True
            if reply:
                self.incoming.put_nowait(reply)

    async def close(self) -> None:
        self.closed = True
        self.incoming.put_nowait(None)


@dataclass
class Harness:
    modem: Modem
    script: Scripted
    inbound: list[Deliver]
    reports: list[StatusReport]
    states: list[ModemInfo]

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait (bounded by the test's timeout) until `check` holds."""
        # Conditions look at the script's log as well, which announces nothing: poll.
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running(
    script: Scripted | None = None,
    *,
    port: AgentPort | None = None,
    inbound_fails: int = 0,
    timings: ModemTimings = FAST,
) -> AsyncIterator[Harness]:
    script = script or Scripted()
    inbound: list[Deliver] = []
    reports: list[StatusReport] = []
    states: list[ModemInfo] = []
    failures = [inbound_fails]

    async def on_inbound(message: Deliver) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise RuntimeError("bus unavailable")
        inbound.append(message)

    async def on_report(report: StatusReport) -> None:
        reports.append(report)

    def on_state(info: ModemInfo) -> None:
        states.append(info)

    modem = Modem(
        port or AgentPort(name="lte-1", device="/dev/fake"),
        command_timeout=0.5,
        send_timeout=0.5,
        on_inbound=on_inbound,
        on_report=on_report,
        on_state=on_state,
        timings=timings,
        opener=script.open,
    )
    task = asyncio.create_task(modem.run())
    harness = Harness(modem, script, inbound, reports, states)
    try:
        async with asyncio.timeout(20):
            yield harness
    finally:
        await modem.close()
        assert task.done()


async def up(harness: Harness) -> None:
    await harness.until(lambda: harness.modem.ready)


# --- pure helpers ------------------------------------------------------------------------


def test_csq_to_dbm() -> None:
    assert dbm_from_csq(0) == -113
    assert dbm_from_csq(31) == -51
    assert dbm_from_csq(99) is None


@pytest.mark.parametrize(
    ("stat", "name"),
    [
        (0, "unregistered"),
        (1, "home"),
        (2, "searching"),
        (3, "denied"),
        (4, "unknown"),
        (5, "roaming"),
        (6, "home"),
        (7, "roaming"),
        (9, "home"),
        (10, "roaming"),
    ],
)
def test_registration_names(stat: int, name: str) -> None:
    assert registration_name(stat) == name


def test_parse_registration_long_form() -> None:
    reply = Reply(Status.OK, (Line('+CEREG: 2,5,"00A1","01B2C3",7'),))
    assert parse_registration(reply, "+CEREG") == 5


@pytest.mark.parametrize(
    ("raw", "iccid"),
    [
        ("89490200001234567890", "89490200001234567890"),
        ('"8949020000123456789F"', "8949020000123456789"),
        ("98942000002143658709", "89490200001234567890"),  # ^ICCID / +CRSM: swapped nibbles
        ('144,0,"98942000002143658709"', "89490200001234567890"),  # +CRSM: sw1,sw2,"data"
        ("ERROR", None),
        ("1234", None),
    ],
)
def test_iccid_forms(raw: str, iccid: str | None) -> None:
    assert normalise_iccid(raw) == iccid


def test_storage_choice() -> None:
    reply = Reply(Status.OK, (Line('+CPMS: ("ME","SM","SR"),("ME","SM"),("ME","SM")'),))
    assert choose_storage(parse_storages(reply)) == "SM"
    only_me = Reply(Status.OK, (Line('+CPMS: ("ME","MT"),("ME","MT"),("ME","MT")'),))
    assert choose_storage(parse_storages(only_me)) == "MT"
    assert choose_storage([]) is None


def test_ussd_ucs2_hex() -> None:
    assert decode_ussd("00420061006C0644", 72) == "Bal\u0644"
    assert decode_ussd("Balance 5 EUR", 15) == "Balance 5 EUR"


# --- initialisation ----------------------------------------------------------------------


async def test_init_and_identity() -> None:
    async with running() as h:
        await up(h)
        info = h.modem.info
        assert info.status is ModemStatus.UP
        assert info.imsi == "262011234567890"
        assert info.iccid == "89490200001234567890"
        assert info.imei == "356938035643809"
        assert info.operator == "Telekom.de"
        assert info.signal == -73
        assert info.registration == "home"
        assert info.smsc == "+491710760000"
        assert info.manufacturer == "Quectel"
        commands = h.script.commands
        order = ["ATZ", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=0", "AT+CPMS=?"]
        assert [c for c in commands if c in order] == order
        assert 'AT+CPMS="SM","SM","SM"' in commands
        assert "AT+CNMI=2,1,0,2,0" in commands
        assert not any(c.startswith("AT+CSCA=") for c in commands)  # SMSC kept as it was


async def test_wavecom_cpin_without_ok() -> None:
    script = Scripted()
    script.answers["AT+CPIN?"] = b"\r\n+CPIN: READY\r\n"
    async with running(script) as h:
        await up(h)


async def test_sim_busy_is_retried() -> None:
    script = Scripted()
    answers = iter([b"\r\n+CME ERROR: 14\r\n", b"\r\n+CME ERROR: SIM busy\r\n"])
    script.answers["AT+CPIN?"] = lambda _: next(answers, b"\r\n+CPIN: READY\r\n\r\nOK\r\n")
    async with running(script) as h:
        await up(h)
        assert h.script.commands.count("AT+CPIN?") == 3


async def test_pin_is_entered_once() -> None:
    script = Scripted()
    state = {"pin": False}

    def cpin_query(_: str) -> bytes:
        return (
            b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
            if state["pin"]
            else b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
        )

    def cpin_set(_: str) -> bytes:
        state["pin"] = True
        return b"\r\nOK\r\n"

    script.answers["AT+CPIN?"] = cpin_query
    script.answers['AT+CPIN="1234"'] = cpin_set
    port = AgentPort(name="lte-1", device="/dev/fake", pin="1234")
    async with running(script, port=port) as h:
        await up(h)
        assert h.script.commands.count('AT+CPIN="1234"') == 1


async def test_wrong_pin_is_not_tried_again() -> None:
    script = Scripted()
    script.answers["AT+CPIN?"] = b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    script.answers['AT+CPIN="0000"'] = b"\r\n+CME ERROR: 16\r\n"
    port = AgentPort(name="lte-1", device="/dev/fake", pin="0000")
    async with running(script, port=port) as h:
        await h.until(lambda: h.script.commands.count("AT+CPIN?") >= 3)
        assert h.script.commands.count('AT+CPIN="0000"') == 1
        assert h.modem.info.status is ModemStatus.DOWN
        assert "PIN" in (h.modem.info.last_error or "")


async def test_missing_pin_is_reported() -> None:
    script = Scripted()
    script.answers["AT+CPIN?"] = b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    async with running(script) as h:
        await h.until(lambda: h.modem.info.last_error == "SIM PIN required and none is configured")
        assert not h.modem.ready


async def test_cnmi_falls_back() -> None:
    script = Scripted()
    script.answers["AT+CNMI=2,1,0,2,0"] = b"\r\n+CMS ERROR: 303\r\n"
    script.answers["AT+CNMI=2,1,0,1,0"] = b"\r\nOK\r\n"
    async with running(script) as h:
        await up(h)
        assert "AT+CNMI=2,1,0,1,0" in h.script.commands


async def test_huawei_iccid_and_not_supported() -> None:
    script = Scripted()
    del script.answers["AT+CCID"]
    script.answers["AT+QCCID"] = b"\r\nCOMMAND NOT SUPPORT\r\n"
    script.answers["AT^ICCID?"] = b"\r\n^ICCID: 98942000002143658709\r\n\r\nOK\r\n"
    script.answers["AT+CMMS=2"] = b"\r\nCOMMAND NOT SUPPORT\r\n"
    async with running(script) as h:
        await up(h)
        assert h.modem.info.iccid == "89490200001234567890"
        outcome = await h.modem.send("+4917612345678", "x" * 200, status_report=False)
        assert outcome.ok
        outcome = await h.modem.send("+4917612345678", "y" * 200, status_report=False)
        assert outcome.ok
        assert h.script.commands.count("AT+CMMS=2") == 1  # not asked again once refused


async def test_unregistered_modem_is_not_ready() -> None:
    script = Scripted()
    script.answers["AT+CREG?"] = b"\r\n+CREG: 0,2\r\n\r\nOK\r\n"
    script.answers["AT+CEREG?"] = b"\r\n+CEREG: 0,3\r\n\r\nOK\r\n"
    async with running(script) as h:
        await h.until(lambda: h.modem.info.status is ModemStatus.UP)
        assert h.modem.info.registration in ("searching", "denied")
        assert not h.modem.ready
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert not outcome.ok
        assert outcome.temporary
        assert h.script.pdus == []


# --- sending -----------------------------------------------------------------------------


async def test_send_records_mr_and_calls_on_part_first() -> None:
    async with running() as h:
        await up(h)
        seen: list[tuple[int, int]] = []

        async def on_part(sequence: int) -> None:
            seen.append((sequence, len(h.script.pdus)))

        outcome = await h.modem.send("+4917612345678", "hello", status_report=True, on_part=on_part)
        assert outcome.ok
        assert outcome.parts[0].sequence == 1
        assert outcome.parts[0].reference == 1
        assert seen == [(1, 0)]  # called before the PDU was written
        pdu = h.script.pdus[0]
        # first octet 0x21: SUBMIT with status report requested; TP-MR 00 (the modem assigns)
        assert pdu[2:6] == "2100"


async def test_ok_without_cmgs_counts_as_sent() -> None:
    script = Scripted(cmgs=[b"\r\nOK\r\n"])
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hello", status_report=False)
        assert outcome.ok
        assert outcome.parts[0].reference is None


async def test_prompt_without_space() -> None:
    async with running(Scripted(prompt=b"\r\n>")) as h:
        await up(h)
        assert (await h.modem.send("+4917612345678", "hello", status_report=False)).ok


async def test_urc_between_prompt_and_cmgs_is_handled() -> None:
    script = Scripted(cmgs=[b'\r\n+CMTI: "SM",3\r\n\r\n+CMGS: 9\r\n\r\nOK\r\n'])
    cmgr = f"\r\n+CMGR: ,,{len(DELIVER) // 2 - 8}\r\n{DELIVER}\r\n\r\nOK\r\n".encode()
    script.answers["AT+CMGR=3"] = cmgr
    script.answers["AT+CMGD=3"] = b"\r\nOK\r\n"
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hello", status_report=False)
        assert outcome.parts[0].reference == 9
        await h.until(lambda: "AT+CMGD=3" in h.script.commands)
        assert [m.text for m in h.inbound] == ["hello"]


async def test_temporary_error_is_retried() -> None:
    script = Scripted(cmgs=[b"\r\n+CMS ERROR: 38\r\n", b"\r\n+CMS ERROR: 42\r\n"])
    async with running(script) as h:
        await up(h)
        parts: list[int] = []

        async def on_part(sequence: int) -> None:
            parts.append(sequence)

        outcome = await h.modem.send("+4917612345678", "hi", status_report=False, on_part=on_part)
        assert outcome.ok
        assert len(h.script.pdus) == 3
        assert parts == [1, 1, 1]


async def test_permanent_error_fails_at_once() -> None:
    script = Scripted(cmgs=[b"\r\n+CMS ERROR: 21\r\n"])
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert not outcome.ok
        assert not outcome.temporary
        assert outcome.code == 21
        assert "21" in (outcome.error or "")
        assert len(h.script.pdus) == 1


async def test_unknown_error_gets_bounded_retries() -> None:
    script = Scripted(cmgs=[b"\r\n+CMS ERROR: 500\r\n"] * 5)
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert not outcome.ok
        assert outcome.temporary
        assert len(h.script.pdus) == FAST.ambiguous_retries + 1


async def test_verbose_cms_error() -> None:
    script = Scripted(cmgs=[b"\r\n+CMS ERROR: Unknown subscriber\r\n"])
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert outcome.code == 30
        assert not outcome.temporary


async def test_failure_after_a_sent_part_is_not_temporary() -> None:
    script = Scripted(cmgs=[b"\r\n+CMGS: 1\r\n\r\nOK\r\n"] + [b"\r\n+CMS ERROR: 42\r\n"] * 9)
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "z" * 200, status_report=False)
        assert not outcome.ok
        assert not outcome.temporary  # part 1 is out: sending again would repeat it
        assert [p.reference for p in outcome.parts] == [1, None]
        assert outcome.parts[1].error is not None


async def test_multipart_uses_cmms_and_rotates_concat_reference() -> None:
    async with running() as h:
        await up(h)
        await h.modem.send("+4917612345678", "a" * 200, status_report=False)
        await h.modem.send("+4917612345678", "b" * 200, status_report=False)
        await h.modem.send("+4930123456", "c" * 200, status_report=False)
        assert h.script.commands.count("AT+CMMS=2") == 3
        # UDH: 05 00 03 <ref> <total> <seq> right after UDL
        refs = [pdu[pdu.index("050003") + 6 : pdu.index("050003") + 8] for pdu in h.script.pdus]
        assert refs[0] == refs[1]  # parts of one message share it
        assert int(refs[2], 16) == (int(refs[0], 16) + 1) % 256  # next message to the same number


async def test_one_part_messages_take_no_concat_reference() -> None:
    # The soak (bench/bench_soak.py) saw the agent's memory grow with every new recipient
    # of a one-part message: each took a slot among the remembered recipients, which only
    # long messages need (a one-part PDU has no concatenation header).
    async with running() as h:
        await up(h)
        for index in range(3):
            await h.modem.send(f"+49301234560{index}", "short", status_report=False)
        assert not any("050003" in pdu for pdu in h.script.pdus)
        assert len(h.modem.sender.concat) == 0
        await h.modem.send("+4930123456", "c" * 200, status_report=False)
        assert len(h.modem.sender.concat) == 1


async def test_no_prompt_escapes_and_sends_nothing() -> None:
    script = Scripted(prompt=b"")
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert not outcome.ok
        assert outcome.temporary
        assert outcome.parts == []
        assert "<ESC>" in h.script.commands


async def test_no_cmgs_after_pdu_is_unknown_not_retried() -> None:
    script = Scripted(cmgs=[b""])  # the PDU goes in, nothing comes back
    async with running(script) as h:
        await up(h)
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert not outcome.ok
        assert not outcome.temporary
        assert "unknown" in (outcome.error or "")
        assert len(h.script.pdus) == 1


# --- receiving ---------------------------------------------------------------------------


def cmgr(pdu: str, stat: str = "0") -> bytes:
    length = len(pdu) // 2 - 1 - int(pdu[:2], 16)
    return f"\r\n+CMGR: {stat},,{length}\r\n{pdu}\r\n\r\nOK\r\n".encode()


async def test_cmti_read_handed_over_then_deleted() -> None:
    script = Scripted()
    script.answers["AT+CMGR=5"] = cmgr(DELIVER, stat="")  # `+CMGR: ,,27`: no stat
    script.answers["AT+CMGD=5"] = b"\r\nOK\r\n"
    async with running(script) as h:
        await up(h)
        h.script.emit(b'\r\n+CMTI: "SM",5\r\n')
        await h.until(lambda: "AT+CMGD=5" in h.script.commands)
        assert [m.text for m in h.inbound] == ["hello"]
        assert h.script.commands.index("AT+CMGR=5") < h.script.commands.index("AT+CMGD=5")


async def test_rssi_inside_cmgr() -> None:
    script = Scripted()
    length = len(DELIVER) // 2 - 8
    script.answers["AT+CMGR=1"] = (
        f"\r\n+CMGR: 0,,{length}\r\n^RSSI: 9\r\n{DELIVER}\r\n\r\nOK\r\n".encode()
    )
    script.answers["AT+CMGD=1"] = b"\r\nOK\r\n"
    async with running(script) as h:
        await up(h)
        h.script.emit(b'\r\n+CMTI: "SM",1\r\n')
        await h.until(lambda: "AT+CMGD=1" in h.script.commands)
        assert [m.text for m in h.inbound] == ["hello"]
        assert h.modem.info.signal == -95


async def test_failed_handler_keeps_the_message() -> None:
    script = Scripted()
    script.answers["AT+CMGR=2"] = cmgr(DELIVER)
    script.answers["AT+CMGD=2"] = b"\r\nOK\r\n"
    async with running(script, inbound_fails=1) as h:
        await up(h)
        h.script.emit(b'\r\n+CMTI: "SM",2\r\n')
        await h.until(lambda: h.script.commands.count("AT+CMGR=2") == 1)
        h.script.emit(b'\r\n+CMTI: "SM",2\r\n')  # or the next sweep: it is still there
        await h.until(lambda: "AT+CMGD=2" in h.script.commands)
        assert h.script.commands.count("AT+CMGR=2") == 2
        assert len(h.inbound) == 1


async def test_sweep_at_start_reads_everything() -> None:
    script = Scripted()
    stored = {"SM": {1: DELIVER, 4: DELIVER}, "SR": {2: REPORT}}
    memory = ["SM"]

    def select(name: str) -> Callable[[str], bytes]:
        def answer(_: str) -> bytes:
            memory[0] = name
            return b"\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n"

        return answer

    def cmgl(_: str) -> bytes:
        lines = [
            f"+CMGL: {index},1,,{len(pdu) // 2 - 8}\r\n{pdu}\r\n"
            for index, pdu in stored[memory[0]].items()
        ]
        return ("\r\n" + "".join(lines) + "\r\nOK\r\n").encode()

    def cmgd(command: str) -> bytes:
        del stored[memory[0]][int(command.split("=")[1])]
        return b"\r\nOK\r\n"

    script.answers["AT+CMGL=4"] = cmgl
    script.answers['AT+CPMS="SM"'] = select("SM")
    script.answers['AT+CPMS="SR"'] = select("SR")
    for index in (1, 2, 4):
        script.answers[f"AT+CMGD={index}"] = cmgd
    async with running(script) as h:
        await h.until(lambda: not any(stored.values()))
        assert len(h.inbound) == 2
        assert len(h.reports) == 1


async def test_undecodable_pdu_is_kept() -> None:
    script = Scripted()
    script.answers["AT+CMGR=7"] = cmgr("0011223344")
    async with running(script) as h:
        await up(h)
        h.script.emit(b'\r\n+CMTI: "SM",7\r\n')
        await h.until(lambda: "AT+CMGR=7" in h.script.commands)
        h.script.emit(b'\r\n+CMTI: "SM",7\r\n')
        await h.until(lambda: h.script.commands.count("AT+CMGR=7") == 2)
        assert "AT+CMGD=7" not in h.script.commands
        assert h.inbound == []


async def test_direct_cmt_phase2plus_is_acknowledged_after_the_handler() -> None:
    script = Scripted()
    script.answers["AT+CSMS?"] = b"\r\n+CSMS: 1,1,1,1\r\n\r\nOK\r\n"
    script.answers["AT+CNMA"] = b"\r\nOK\r\n"
    async with running(script) as h:
        await up(h)
        length = len(DELIVER) // 2 - 8
        h.script.emit(f"\r\n+CMT: ,{length}\r\n{DELIVER}\r\n".encode())
        await h.until(lambda: "AT+CNMA" in h.script.commands)
        assert [m.text for m in h.inbound] == ["hello"]


async def test_direct_cmt_phase2_needs_no_ack() -> None:
    async with running() as h:
        await up(h)
        length = len(DELIVER) // 2 - 8
        h.script.emit(f"\r\n+CMT: ,{length}\r\n{DELIVER}\r\n".encode())
        await h.until(lambda: len(h.inbound) == 1)
        assert "AT+CNMA" not in h.script.commands


async def test_cdsi_reads_report_storage() -> None:
    script = Scripted()
    script.answers["AT+CMGR=1"] = cmgr(REPORT)
    script.answers["AT+CMGD=1"] = b"\r\nOK\r\n"
    async with running(script) as h:
        await up(h)
        h.script.emit(b'\r\n+CDSI: "SR",1\r\n')
        await h.until(lambda: len(h.reports) == 1)
        await h.until(lambda: h.script.commands[-1] == "AT+CMGD=1")
        commands = h.script.commands
        read = commands.index("AT+CMGR=1")
        selected = [c for c in commands[:read] if c.startswith("AT+CPMS=")]
        assert selected[-1] == 'AT+CPMS="SR"'  # read from the report storage
        assert commands[read + 1] == "AT+CMGD=1"
        assert h.reports[0].message_reference == 42
        # SR stays selected: the next report costs no AT+CPMS at all.
        switches = sum(c.startswith("AT+CPMS=") for c in commands)
        h.script.emit(b'\r\n+CDSI: "SR",1\r\n')
        await h.until(lambda: len(h.reports) == 2)
        await h.until(lambda: h.script.commands.count("AT+CMGD=1") == 2)
        assert sum(c.startswith("AT+CPMS=") for c in h.script.commands) == switches


async def test_direct_cds() -> None:
    async with running() as h:
        await up(h)
        h.script.emit(f"\r\n+CDS: {len(REPORT) // 2 - 8}\r\n{REPORT}\r\n".encode())
        await h.until(lambda: len(h.reports) == 1)


# --- health and recovery -----------------------------------------------------------------


async def test_hung_modem_goes_down_the_ladder_and_comes_back() -> None:
    script = Scripted()
    async with running(script) as h:
        await up(h)
        opens = h.script.opens
        saved = dict(h.script.answers)
        h.script.answers = {}  # silence: every command unanswered
        h.script.answers["AT+CFUN=1,1"] = None
        for key in saved:
            h.script.answers[key] = None
        h.modem._poll_now.set()  # the next poll finds it hung
        await h.until(lambda: "AT+CFUN=1,1" in h.script.commands)
        assert "<ESC>" in h.script.commands  # ESC/Ctrl-Z before the reset
        assert h.script.opens > opens  # the port was reopened
        h.script.answers = saved
        await up(h)


async def test_unplugged_modem_is_reopened_when_back() -> None:
    script = Scripted()
    async with running(script) as h:
        await up(h)
        script.unplugged = True
        assert script.link is not None
        await script.link.close()
        await h.until(lambda: h.modem.info.status is ModemStatus.DOWN)
        outcome = await h.modem.send("+4917612345678", "hi", status_report=False)
        assert outcome.temporary
        script.unplugged = False
        await up(h)


async def test_spontaneous_reboot_reinitialises() -> None:
    async with running() as h:
        await up(h)
        count = h.script.commands.count("AT+CMGF=0")
        h.script.emit(b"\r\nRDY\r\n")
        await h.until(lambda: h.script.commands.count("AT+CMGF=0") == count + 1)
        await up(h)


async def test_ussd() -> None:
    script = Scripted()

    def cusd(_: str) -> bytes:
        script.emit(b'\r\n+CUSD: 0,"Balance: 5.00 EUR",15\r\n')
        return b"\r\nOK\r\n"

    script.answers['AT+CUSD=1,"*100#",15'] = cusd
    async with running(script) as h:
        await up(h)
        assert await h.modem.ussd("*100#", 2.0) == "Balance: 5.00 EUR"
