"""Every fault switched on, seen on the wire, and switched off again."""

from __future__ import annotations

import asyncio
import errno
import os
import re
from collections.abc import AsyncIterator

import pytest
from smsgate.config import SimConfig
from smsgate.pdu import encode_submit
from smsgate_sim import Simulator
from smsgate_sim.faults import NOISE_URCS

from .test_sim_support import FINAL, Line, eventually, quiet

FAST = {
    "part_time": 0.01,
    "delivery_delay": 0.0,
    "report_delay": 0.01,
    "reset_time": 0.05,
    "control": "",
    "seed": 3,
}
NOISE = b"|".join(re.escape(u.encode()) for u in NOISE_URCS)


def config(**changes: object) -> SimConfig:
    return SimConfig(**{"ports": 2, **FAST, **changes})  # type: ignore[arg-type]


def read_or_errno(fd: int) -> bytes | int:
    try:
        return os.read(fd, 100)
    except OSError as exc:
        return exc.errno or 0


async def arrived(sim: Simulator, port: str) -> None:
    """Wait until the modem has read everything written to it (quiet() sent 20 bytes before)."""
    modem = sim.modem(port)
    before = modem.stats.bytes_received
    await eventually(lambda: modem.stats.bytes_received > before)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(config()) as simulator:
        yield simulator


@pytest.fixture
async def line(sim: Simulator) -> AsyncIterator[Line]:
    opened = await Line.open(sim.devices["lte-1"])
    await quiet(opened)
    yield opened
    await opened.close()


async def test_send_fails_for_the_next_n_sends(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", send_error=38, send_error_count=2)
    [part] = encode_submit("+4915112345678", "retry me")
    assert await line.send_pdu(part) == b"\r\n+CMS ERROR: 38\r\n"
    assert await line.send_pdu(part) == b"\r\n+CMS ERROR: 38\r\n"
    assert await line.send_pdu(part) == b"\r\n+CMGS: 0\r\n\r\nOK\r\n"
    assert sim.modem("lte-1").stats.send_failures == 2
    assert len(sim.sent("lte-1")) == 1


async def test_send_failure_rate(sim: Simulator, line: Line) -> None:
    [part] = encode_submit("+4915112345678", "always fails")
    sim.set_fault("lte-1", send_error_rate=1.0)
    for _ in range(3):
        assert await line.send_pdu(part) == b"\r\n+CMS ERROR: 500\r\n"
    sim.set_fault("lte-1", send_error_rate=0.0)
    assert (await line.send_pdu(part)).startswith(b"\r\n+CMGS: ")


async def test_verbose_errors_follow_cmee(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", send_error=42, send_error_count=1)
    await line.at("AT+CMEE=2")
    [part] = encode_submit("+4915112345678", "congested")
    assert await line.send_pdu(part) == b"\r\n+CMS ERROR: Congestion\r\n"


async def test_hung_modem_answers_nothing_until_cleared(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", hung=True)
    await line.write(b"AT+CGMI\r")  # swallowed: a hung firmware reads and drops it
    await arrived(sim, "lte-1")
    sim.set_fault("lte-1", hung=False)
    answer = await line.at("AT+CGSN")
    assert answer == f"\r\n{sim.modem('lte-1').imei}\r\n\r\nOK\r\n".encode()


async def test_hung_modem_recovers_by_reset(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", hung=True)
    [part] = encode_submit("+4915112345678", "lost in a hang")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    await sim.reset("lte-1")
    assert await line.until(b"RDY\r\n") == b"\r\nRDY\r\n"  # no prompt came before it
    assert sim.modem("lte-1").faults.hung is False
    assert await line.at("AT") == b"AT\r\r\nOK\r\n"
    assert sim.sent() == []


async def test_hang_in_the_middle_of_a_send_loses_the_answer() -> None:
    async with Simulator(config(part_time=0.2)) as sim:
        line = await Line.open(sim.devices["lte-1"])
        try:
            await quiet(line)
            [part] = encode_submit("+4915112345678", "hang mid-send")
            await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
            await line.until(b"> ")
            await line.write(part.pdu.encode() + b"\x1a")
            sim.set_fault("lte-1", hung=True)
            await sim.reset("lte-1")
            assert await line.until(b"RDY\r\n") == b"\r\nRDY\r\n"  # and no +CMGS before it
            assert sim.sent() == []
        finally:
            await line.close()


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_unplug_and_replug_keep_the_device_path(transport: str) -> None:
    async with Simulator(config(transport=transport)) as sim:
        device = sim.devices["lte-1"]
        line = await Line.open(device)
        await quiet(line)
        await sim.unplug("lte-1")
        with pytest.raises((EOFError, OSError)):
            await line.at("AT")  # reads end or fail like a pulled USB cable
        await line.close()
        with pytest.raises(OSError, match=r"(?i)could not open port|connect call failed"):
            await Line.open(device)
        await sim.inject("while you were away", sender="+4930123456", to_port="lte-1")
        await sim.replug("lte-1")
        assert sim.devices["lte-1"] == device
        again = await Line.open(device)
        try:
            await quiet(again)
            listing = await again.at("AT+CMGL=4")
            assert listing.startswith(b"\r\n+CMGL: 1,0,,"), listing  # held by the network
            assert sim.modem("lte-1").stats.unplugs == 1
        finally:
            await again.close()


async def test_unplugged_pty_fails_reads_with_eio_or_eof(sim: Simulator) -> None:
    fd = os.open(sim.devices["lte-1"], os.O_RDWR | os.O_NOCTTY)
    try:
        await sim.unplug("lte-1")
        assert read_or_errno(fd) in (b"", errno.EIO)
        with pytest.raises(OSError, match="Input/output error"):
            os.write(fd, b"AT\r")
    finally:
        os.close(fd)
    await sim.replug("lte-1")
    fd = os.open(sim.devices["lte-1"], os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"AT\r")
        answer = b""
        while not answer.endswith(b"OK\r\n"):
            answer += await asyncio.to_thread(os.read, fd, 100)
        assert answer == b"AT\r\r\nOK\r\n"
    finally:
        os.close(fd)


async def test_tcp_takes_the_newest_connection(tmp_path: object) -> None:
    async with Simulator(config(transport="tcp")) as sim:
        first = await Line.open(sim.devices["lte-1"])
        second = await Line.open(sim.devices["lte-1"])
        try:
            assert await second.at("AT") == b"AT\r\r\nOK\r\n"
            with pytest.raises((EOFError, ConnectionError)):
                await first.at("AT")
        finally:
            await first.close()
            await second.close()


async def test_reset_can_drop_the_device_like_usb(tmp_path: object) -> None:
    async with Simulator(config(reset_unplugs=True)) as sim:
        device = sim.devices["lte-1"]
        line = await Line.open(device)
        await quiet(line)
        await line.write(b"AT+CFUN=1,1\r")
        assert await line.final() == b"\r\nOK\r\n"
        with pytest.raises((EOFError, OSError)):
            await line.at("AT")
        await line.close()
        modem, endpoint = sim.modem("lte-1"), sim.endpoint("lte-1")
        await eventually(lambda: modem.stats.unplugs == 1 and endpoint.plugged)
        again = await Line.open(device)
        try:
            assert await again.at("AT") == b"AT\r\r\nOK\r\n"
        finally:
            await again.close()


async def test_garbage_on_the_line(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", garbage_rate=1.0)
    answer = await line.at("AT")
    assert answer.endswith(b"\r\nOK\r\n")
    assert len(answer) > len(b"\r\nOK\r\n")
    sim.set_fault("lte-1", garbage_rate=0.0)
    assert await line.at("AT") == b"\r\nOK\r\n"


async def test_urcs_inside_a_response_and_before_cmgs(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", urc_rate=1.0)
    answer = await line.at("AT+CSQ")
    assert re.fullmatch(rb"\r\n\+CSQ: \d+,99\r\n\r\n(" + NOISE + rb")\r\n\r\nOK\r\n", answer)
    [part] = encode_submit("+4915112345678", "noisy")
    await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    await line.until(b"> ")
    await line.write(part.pdu.encode() + b"\x1a")
    answer = await line.final()
    assert re.fullmatch(
        rb"\r\n(" + NOISE + rb")\r\n\r\n\+CMGS: 0\r\n\r\n(" + NOISE + rb")\r\n\r\nOK\r\n", answer
    ), answer
    sim.set_fault("lte-1", urc_rate=0.0)
    assert await line.at("AT") == b"\r\nOK\r\n"


@pytest.mark.parametrize("interleave", [False, True])
async def test_cmti_during_a_send(interleave: bool) -> None:
    async with Simulator(config(part_time=1.0)) as sim:
        line = await Line.open(sim.devices["lte-1"])
        try:
            await quiet(line)
            if interleave:
                sim.set_fault("lte-1", urc_rate=1.0)
            [part] = encode_submit("+4915112345678", "busy line")
            await line.write(f"AT+CMGS={part.tpdu_length}\r".encode())
            await line.until(b"> ")
            await line.write(part.pdu.encode() + b"\x1a")
            await eventually(lambda: sim.modem("lte-1").stats.pdus_received == 1)
            await sim.inject("arrives mid-send", sender="+4930123456", to_port="lte-1")
            received = await line.lines_until(lambda seen: b"+CMTI" in seen and b"OK" in seen)
            cmti, cmgs = received.index(b"+CMTI"), received.index(b"+CMGS")
            # Held until the final result (CNMI mode 2), or let through by the URC fault.
            assert (cmti < cmgs) is interleave
        finally:
            await line.close()


async def test_sim_not_ready(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", sim_not_ready=True)
    assert await line.at("AT+CPIN?") == b"\r\n+CME ERROR: 14\r\n"
    assert await line.at("AT+CIMI") == b"\r\n+CME ERROR: 14\r\n"
    assert await line.at("AT+CPMS?") == b"\r\n+CMS ERROR: 314\r\n"
    assert await line.at("AT+CMGS=20") == b"\r\n+CMS ERROR: 314\r\n"
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"
    sim.set_fault("lte-1", sim_not_ready=False)
    assert await line.at("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"


async def test_sim_needs_time_after_power_on() -> None:
    async with Simulator(config(sim_ready_delay=2.0)) as sim:
        line = await Line.open(sim.devices["lte-1"])
        try:
            await quiet(line)
            assert await line.at("AT+CPIN?") == b"\r\n+CME ERROR: 14\r\n"
            assert await line.urc(b"+CPIN:") == b"+CPIN: READY"
            assert await line.at("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        finally:
            await line.close()


async def test_pin_entry_and_puk_lock() -> None:
    async with Simulator(config(pin="1234")) as sim:
        line = await Line.open(sim.devices["lte-1"])
        try:
            await quiet(line)
            assert await line.at("AT+CPIN?") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
            assert await line.at("AT+CIMI") == b"\r\n+CME ERROR: 11\r\n"
            assert await line.at('AT+CPIN="0000"') == b"\r\n+CME ERROR: 16\r\n"
            assert await line.at('AT+CPIN="1234"') == b"\r\nOK\r\n"
            assert await line.at("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
            other = await Line.open(sim.devices["lte-2"])
            try:
                await quiet(other)
                for _ in range(3):
                    assert await other.at('AT+CPIN="9999"') == b"\r\n+CME ERROR: 16\r\n"
                assert await other.at("AT+CPIN?") == b"\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n"
                assert await other.at('AT+CPIN="12345678","1234"') == b"\r\nOK\r\n"
                assert await other.at("AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
            finally:
                await other.close()
        finally:
            await line.close()


async def test_deregistered(sim: Simulator, line: Line) -> None:
    await line.at("AT+CREG=1")
    sim.set_fault("lte-1", deregistered=True)
    assert await line.urc(b"+CREG:") == b"+CREG: 2"
    assert await line.at("AT+CREG?") == b"\r\n+CREG: 1,2\r\n\r\nOK\r\n"
    assert await line.at("AT+COPS?") == b"\r\n+COPS: 0\r\n\r\nOK\r\n"
    [part] = encode_submit("+4915112345678", "no network")
    assert await line.send_pdu(part) == b"\r\n+CMS ERROR: 331\r\n"
    await sim.inject("waits at the SMSC", sender="+4930123456", to_port="lte-1")
    sim.set_fault("lte-1", deregistered=False)
    assert await line.urc(b"+CREG:") == b"+CREG: 1"
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",1'
    assert (await line.send_pdu(part)).startswith(b"\r\n+CMGS: ")


async def test_storage_full(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", storage_full=True)
    assert await line.at("AT+CPMS?") == b'\r\n+CPMS: "SM",30,30,"SM",30,30,"SM",30,30\r\n\r\nOK\r\n'
    [part] = encode_submit("+4915112345678", "draft")
    await line.write(f"AT+CMGW={part.tpdu_length}\r".encode())
    await line.until(b"> ")
    await line.write(part.pdu.encode() + b"\x1a")
    assert await line.final() == b"\r\n+CMS ERROR: 322\r\n"
    await sim.inject("no room", sender="+4930123456", to_port="lte-1")
    assert await line.at("AT+CMGL=4") == b"\r\nOK\r\n"  # not stored
    assert sim.network.held(sim.modem("lte-1")) == 1
    sim.set_fault("lte-1", storage_full=False)
    assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",1'


async def test_real_storage_fills_and_frees() -> None:
    async with Simulator(config(storage_size=2)) as sim:
        line = await Line.open(sim.devices["lte-1"])
        try:
            await quiet(line)
            for n in range(3):
                await sim.inject(f"message {n}", sender="+4930123456", to_port="lte-1")
            assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",1'
            assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",2'
            assert await line.at("AT+CPMS?") == (
                b'\r\n+CPMS: "SM",2,2,"SM",2,2,"SM",2,2\r\n\r\nOK\r\n'
            )
            assert await line.at("AT+CMGD=1") == b"\r\nOK\r\n"
            assert await line.urc(b"+CMTI:") == b'+CMTI: "SM",1'  # the third, retried
        finally:
            await line.close()


async def test_signal_override(sim: Simulator, line: Line) -> None:
    sim.set_fault("lte-1", signal=3)
    assert await line.at("AT+CSQ") == b"\r\n+CSQ: 3,99\r\n\r\nOK\r\n"
    sim.clear_faults("lte-1")
    rssi = sim.modem("lte-1").rssi
    assert await line.at("AT+CSQ") == f"\r\n+CSQ: {rssi},99\r\n\r\nOK\r\n".encode()


async def test_faults_for_every_port_and_clearing(sim: Simulator, line: Line) -> None:
    sim.set_fault(None, send_error=21, send_error_rate=1.0)
    assert all(m.faults.send_error == 21 for m in sim.modems.values())
    [part] = encode_submit("+4915112345678", "rejected")
    assert await line.send_pdu(part) == b"\r\n+CMS ERROR: 21\r\n"
    sim.clear_faults()
    assert all(m.faults.send_error_rate == 0.0 for m in sim.modems.values())
    assert FINAL.search(await line.send_pdu(part))
    with pytest.raises(ValueError, match="send_error_rate"):
        sim.set_fault("lte-1", send_error_rate=2.0)
