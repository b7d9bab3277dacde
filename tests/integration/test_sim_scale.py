"""256 modems in one process stay responsive under concurrent sends; CPU cost printed."""

from __future__ import annotations

import asyncio
import re
import time

from smsgate.config import SimConfig
from smsgate.pdu import SubmitPart, encode_submit
from smsgate_sim import Simulator

from .test_sim_support import Line, eventually, quiet

PORTS = 256
PARTS_PER_PORT = 4


async def test_256_modems_send_concurrently() -> None:
    config = SimConfig(
        ports=PORTS,
        part_time=(0.0, 0.01),
        delivery_delay=0.0,
        report_delay=(0.0, 0.01),
        control="",
        seed=11,
    )
    async with Simulator(config) as sim:
        devices = sim.devices.values()
        lines = await asyncio.gather(*(Line.open_raw(device) for device in devices))
        try:
            await asyncio.gather(*(quiet(line) for line in lines))
            await asyncio.gather(*(line.at("AT+CNMI=2,1,0,1,0") for line in lines))
            # Every part goes to the next port's SIM, with a report: both directions are busy.
            numbers = list(sim.numbers.values())
            texts = [f"part {n} of a benchmark message" for n in range(PARTS_PER_PORT)]
            parts = [
                [encode_submit(numbers[(i + 1) % PORTS], t, status_report=True)[0] for t in texts]
                for i in range(PORTS)
            ]

            async def send_all(line: Line, mine: list[SubmitPart]) -> list[bytes]:
                return [await line.send_pdu(part) for part in mine]

            cpu, wall = time.process_time(), time.perf_counter()
            answers = await asyncio.gather(*map(send_all, lines, parts))
            await eventually(
                lambda: (
                    sum(m.stats.reports_delivered for m in sim.modems.values())
                    == PORTS * PARTS_PER_PORT
                )
            )
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            total = PORTS * PARTS_PER_PORT
            # URCs (+CMTI, +CDS) for this port's own traffic may come first; the result is last.
            assert all(re.search(rb"\+CMGS: \d+\r\n\r\nOK\r\n$", a) for p in answers for a in p)
            assert len(sim.sent()) == total
            assert sum(m.stats.inbound_delivered for m in sim.modems.values()) == total
            # Still answering, every one of them, after the burst.
            alive = await asyncio.gather(*(line.at("AT") for line in lines))
            assert all(answer.endswith(b"\r\nOK\r\n") for answer in alive)
            print(
                f"\n{total} parts on {PORTS} pty modems (+ delivery to a SIM and a report each): "
                f"{cpu / total * 1e6:.0f} us CPU per part in this process "
                f"(simulator and test clients together), {wall:.2f} s wall"
            )
        finally:
            await asyncio.gather(*(line.close() for line in lines))
