"""The simulator's TCP modems on uvloop, the loop `smsgate sim` runs on."""

from __future__ import annotations

import asyncio

import uvloop
from smsgate.config import SimConfig
from smsgate_sim.simulator import Simulator


async def _answer_to_at() -> bytes:
    sim = Simulator(SimConfig(ports=1, transport="tcp", control=""))
    await sim.start()
    try:
        host, port = sim.devices["lte-1"].removeprefix("socket://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"AT\r")
        answer = b""
        async with asyncio.timeout(10):
            while b"OK" not in answer:
                more = await reader.read(100)
                if not more:
                    break  # the modem hung up
                answer += more
        writer.close()
        return answer
    finally:
        await sim.stop()


def test_a_tcp_modem_answers_on_uvloop() -> None:
    # uvloop's transports are not asyncio.Transport subclasses: the modem took none.
    assert b"OK" in uvloop.run(_answer_to_at())
