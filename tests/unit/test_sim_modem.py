"""The modem's AT state machine fed bytes directly: no pty, no socket, no control server."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from smsgate.config import SimConfig
from smsgate.pdu import Alphabet, Deliver, decode, encode_submit
from smsgate_sim.modem import VirtualModem
from smsgate_sim.network import Network
from smsgate_sim.profiles import Profile, profile
from smsgate_sim.simulator import identity


class Bench:
    """Two modems on one network, each writing into a byte buffer."""

    def __init__(self, quirks: Profile | None = None, **changes: object) -> None:
        settings = {
            "ports": 2,
            "part_time": 0.0,
            "delivery_delay": 0.0,
            "report_delay": 0.0,
            "ussd_delay": 0.0,
            "control": "",
            **changes,
        }
        self.config = SimConfig(**settings)  # type: ignore[arg-type]
        self.network = Network(self.config, random.Random(1))
        self.out: dict[str, bytearray] = {}
        self.modems: dict[str, VirtualModem] = {}
        for index in (1, 2):
            name = f"lte-{index}"
            sim, imei = identity(self.config, index)
            modem = VirtualModem(
                name,
                sim=sim,
                imei=imei,
                profile=quirks or profile(self.config.profile),
                network=self.network,
                config=self.config,
                rng=random.Random(index),
            )
            self.out[name] = bytearray()
            modem.output = self.out[name].extend
            self.network.attach(modem)
            self.modems[name] = modem
            modem.boot(announce=False)
            self.at("ATE0", name)

    def at(self, line: str, name: str = "lte-1") -> bytes:
        """Feed one command line; what the modem wrote back at once."""
        return self.feed(line.encode() + b"\r", name)

    def feed(self, data: bytes, name: str = "lte-1") -> bytes:
        self.out[name].clear()
        self.modems[name].feed(data)
        return self.take(name)

    def take(self, name: str = "lte-1") -> bytes:
        data = bytes(self.out[name])
        self.out[name].clear()
        return data


async def settle() -> None:
    """Let zero-delay timers (part time, delivery, reports) run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_error_codes_follow_cmee() -> None:
    bench = Bench(pin="1234")
    assert bench.at("AT+CIMI") == b"\r\nERROR\r\n"
    assert bench.at("AT+CPMS?") == b"\r\n+CMS ERROR: 311\r\n"  # +CMS shows whatever CMEE says
    bench.at("AT+CMEE=1")
    assert bench.at("AT+CIMI") == b"\r\n+CME ERROR: 11\r\n"
    bench.at("AT+CMEE=2")
    assert bench.at("AT+CIMI") == b"\r\n+CME ERROR: SIM PIN required\r\n"
    assert bench.at("AT+CPMS?") == b"\r\n+CMS ERROR: SIM PIN required\r\n"
    assert bench.at("AT+CMEE?") == b"\r\n+CMEE: 2\r\n\r\nOK\r\n"


async def test_read_and_test_forms() -> None:
    bench = Bench()
    expected = {
        "AT+CMGF?": b"+CMGF: 0",
        "AT+CMGF=?": b"+CMGF: (0,1)",
        "AT+CNMI?": b"+CNMI: 2,1,0,0,0",
        "AT+CMMS?": b"+CMMS: 0",
        "AT+CMMS=?": b"+CMMS: (0-2)",
        "AT+CSMP?": b"+CSMP: 17,167,0,0",
        "AT+CSCS?": b'+CSCS: "IRA"',
        "AT+CSMS?": b"+CSMS: 0,1,1,1",
        "AT+CFUN?": b"+CFUN: 1",
        "AT+CFUN=?": b"+CFUN: (0,1,4),(0,1)",
        "AT+CUSD?": b"+CUSD: 0",
        "AT+CREG=?": b"+CREG: (0-2)",
        "AT+CSQ=?": b"+CSQ: (0-31,99),(0-7,99)",
        "AT+CGMI": b"SMSGATE",
        "AT+COPS=?": b'+COPS: (2,"SIMNET","SIMNET","00101",7),,(0-4),(0-2)',
    }
    for command, line in expected.items():
        assert bench.at(command) == b"\r\n" + line + b"\r\n\r\nOK\r\n", command
    assert bench.at("ATI") == b"\r\nSMSGATE\r\nSIM-LTE\r\nRevision: SMSGATE-SIM 1.0\r\n\r\nOK\r\n"


async def test_settings_change_and_reset_with_atz() -> None:
    bench = Bench()
    assert bench.at("AT+CSMP=49,167,0,8") == b"\r\nOK\r\n"
    assert bench.at("AT+CSMP?") == b"\r\n+CSMP: 49,167,0,8\r\n\r\nOK\r\n"
    assert bench.at('AT+CSCA="+4917200000"') == b"\r\nOK\r\n"
    assert bench.at("AT+COPS=3,2") == b"\r\nOK\r\n"
    assert bench.at("AT+COPS?") == b'\r\n+COPS: 0,2,"00101",7\r\n\r\nOK\r\n'
    assert bench.at("AT+CREG=2") == b"\r\nOK\r\n"
    assert bench.at("AT+CREG?").startswith(b'\r\n+CREG: 2,1,"00A1","')
    assert bench.at("ATZ") == b"\r\nOK\r\n"  # echo was still off for ATZ itself
    assert bench.at("AT+CSMP?") == b"AT+CSMP?\r\r\n+CSMP: 17,167,0,0\r\n\r\nOK\r\n"
    assert b'"+4917200000"' in bench.at("AT+CSCA?")  # the SMSC lives on the SIM


async def test_bad_arguments() -> None:
    bench = Bench()
    bench.at("AT+CMEE=1")
    assert bench.at("AT+CMGF=2") == b"\r\nERROR\r\n"
    assert bench.at("AT+CNMI=2,1,1") == b"\r\nERROR\r\n"
    assert bench.at('AT+CPMS="XX"') == b"\r\n+CMS ERROR: 302\r\n"
    assert bench.at("AT+CMGS=0") == b"\r\n+CMS ERROR: 304\r\n"  # no prompt for that
    assert bench.at("AT+CMGS=abc") == b"\r\nERROR\r\n"
    assert bench.at("ATV0") == b"\r\nERROR\r\n"
    assert bench.at("AT+CSQ=1") == b"\r\nERROR\r\n"
    assert bench.at("hello") == b""  # not a command line: ignored


async def test_cnmi_mode_0_buffers_indications_until_mode_2() -> None:
    bench = Bench()
    bench.at("AT+CNMI=0,1,0,0,0")
    bench.network.inject(bench.modems["lte-1"], "+4930123456", "buffered")
    assert bench.take() == b""
    assert bench.at("AT+CNMI=2,1,0,0,0") == b'\r\nOK\r\n\r\n+CMTI: "SM",1\r\n'
    bench.at("AT+CNMI=0,1,0,0,0")
    bench.network.inject(bench.modems["lte-1"], "+4930123456", "dropped")
    assert bench.at("AT+CNMI=2,1,0,0,1") == b"\r\nOK\r\n"  # bfr=1 clears the buffer
    bench.at("AT+CNMI=2,0,0,0,0")
    bench.network.inject(bench.modems["lte-1"], "+4930123456", "silent")
    assert bench.take() == b""  # mt=0: stored, not announced
    assert bench.at("AT+CPMS?").startswith(b'\r\n+CPMS: "SM",3,30')


async def test_commands_wait_while_a_send_is_in_flight() -> None:
    bench = Bench(part_time=0.01)
    [part] = encode_submit("+4915112345678", "queue behind me")
    bench.at(f"AT+CMGS={part.tpdu_length}")
    assert bench.feed(part.pdu.encode() + b"\x1aAT+CGMI\r") == b""
    await asyncio.sleep(0.05)
    assert bench.take() == b"\r\n+CMGS: 0\r\n\r\nOK\r\n\r\nSMSGATE\r\n\r\nOK\r\n"


async def test_pdu_may_arrive_in_pieces() -> None:
    bench = Bench()
    [part] = encode_submit("+4915112345678", "piecewise")
    assert bench.at(f"AT+CMGS={part.tpdu_length}") == b"\r\n> "
    half = len(part.pdu) // 2
    assert bench.feed(part.pdu[:half].encode()) == b""
    bench.feed(part.pdu[half:].encode() + b"\r\n\x1a")  # line ends inside the PDU are ignored
    await settle()
    assert bench.take() == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"


async def test_radio_off_with_cfun_0() -> None:
    bench = Bench()
    bench.at("AT+CMEE=1")
    assert bench.at("AT+CFUN=0") == b"\r\nOK\r\n"
    assert bench.at("AT+CREG?") == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"
    assert bench.at("AT+CSQ") == b"\r\n+CSQ: 99,99\r\n\r\nOK\r\n"
    assert bench.at('AT+CUSD=1,"*100#",15') == b"\r\n+CME ERROR: 30\r\n"
    [part] = encode_submit("+4915112345678", "radio off")
    bench.at(f"AT+CMGS={part.tpdu_length}")
    assert bench.feed(part.pdu.encode() + b"\x1a") == b"\r\n+CMS ERROR: 331\r\n"
    bench.at("AT+CFUN=1")
    assert bench.at("AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"


async def test_text_mode_indications_and_listing() -> None:
    bench = Bench()
    bench.at("AT+CMGF=1")
    bench.at("AT+CNMI=2,2,0,1,0")
    bench.network.inject(bench.modems["lte-1"], "+4930123456", "direct")
    assert bench.take().startswith(b'\r\n+CMT: "+4930123456",,"')
    bench.at("AT+CSMP=49,167,0,0")  # TP-SRR in the first octet
    bench.at('AT+CMGS="+4915112345678"')
    bench.feed(b"with report\x1a")
    await asyncio.sleep(0.01)
    out = bench.take()
    assert out.startswith(b"\r\n+CMGS: 0\r\n\r\nOK\r\n")
    assert b'\r\n+CDS: 6,0,"+4915112345678",145,"' in out
    bench.at("AT+CNMI=2,1,0,0,0")
    bench.network.inject(bench.modems["lte-1"], "+4930123456", "stored")
    bench.take()
    listing = bench.at('AT+CMGL="ALL"')
    assert listing.startswith(b'\r\n+CMGL: 1,"REC UNREAD","+4930123456",,"')
    assert listing.endswith(b"\r\nstored\r\n\r\nOK\r\n")
    assert bench.at('AT+CMGL="BOGUS"') == b"\r\n+CMS ERROR: 305\r\n"
    too_long = "x" * 200
    bench.at('AT+CMGS="+4915112345678"')
    assert bench.feed(too_long.encode() + b"\x1a") == b"\r\n+CMS ERROR: 305\r\n"


async def test_text_mode_in_ucs2_charset() -> None:
    bench = Bench()
    bench.at("AT+CMGF=1")
    bench.at('AT+CSCS="UCS2"')
    bench.at('AT+CMGS="10086"')
    bench.feed("余额".encode("utf-16-be").hex().upper().encode() + b"\x1a")
    await settle()
    assert bench.take() == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert bench.modems["lte-1"].sent[0].text == "余额"


async def test_inject_with_a_chosen_alphabet_and_order() -> None:
    bench = Bench()
    modem = bench.modems["lte-1"]
    assert bench.network.inject(modem, "+49301", "abc", alphabet=Alphabet.UCS2) == 1
    assert bench.network.inject(modem, "+49301", "y" * 300, order="shuffle") == 2
    bench.take()
    first = decode(modem.memories["SM"].get(1).pdu)  # type: ignore[union-attr]
    assert isinstance(first, Deliver)
    assert first.alphabet is Alphabet.UCS2
    with pytest.raises(ValueError, match="GSM 7-bit"):
        bench.network.inject(modem, "+49301", "中", alphabet=Alphabet.GSM7)


async def test_sim_to_sim_with_application_port_and_8bit_data() -> None:
    bench = Bench()
    target = bench.modems["lte-2"].sim.msisdn
    [part] = encode_submit(target, "\x01\x02binary", alphabet=Alphabet.DATA8)
    bench.at(f"AT+CMGS={part.tpdu_length}")
    bench.feed(part.pdu.encode() + b"\x1a")
    await settle()
    stored = bench.modems["lte-2"].memories["SM"].get(1)
    assert stored is not None
    message = decode(stored.pdu)
    assert isinstance(message, Deliver)
    assert (message.alphabet, message.data) == (Alphabet.DATA8, b"\x01\x02binary")


async def test_echo_comes_as_characters_arrive() -> None:
    bench = Bench()
    bench.at("ATE1")
    assert bench.feed(b"A") == b"A"
    assert bench.feed(b"T+CG") == b"T+CG"
    assert bench.feed(b"MX\x08I\r") == b"MX\x08I\r\r\nSMSGATE\r\n\r\nOK\r\n"  # backspace
    [part] = encode_submit("+4915112345678", "typed")
    assert bench.at(f"AT+CMGS={part.tpdu_length}").endswith(b"\r\n> ")
    assert bench.feed(part.pdu[:10].encode()) == part.pdu[:10].encode()


async def test_huawei_reports_rssi_until_curc_0() -> None:
    chatty = dataclasses.replace(profile("huawei"), rssi_every=0.001)
    bench = Bench(quirks=chatty)
    await asyncio.sleep(0.01)
    assert bench.take().startswith(b"\r\n^RSSI: ")
    assert bench.at("AT^CURC=0") == b"\r\nOK\r\n"
    bench.take()
    await asyncio.sleep(0.01)
    assert bench.take() == b""
