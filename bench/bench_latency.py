"""Benchmarks 3 and 4: accept-to-modem latency and inbound-to-callback latency, idle farm.

3. From the moment the client sends `GET /sendsms` (timeout=0) to the first byte of the
   PDU at the virtual modem (the simulator's `pdu_time`), one request at a time.
4. From the simulator emitting the inbound SMS (`+CMT`/`+CMTI`) to the callback receiver
   getting the gateway-style request.

This process runs the simulator and the receiver (both idle but for the sample in
flight) and the HTTP client; nats-server, the API, one agent and the callback service
are processes of their own. Every timestamp is this machine's `time.time()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import urllib.parse
from pathlib import Path

import httpx
import msgspec
import uvloop
from nats.aio.client import Client
from smsgate import bus
from smsgate.config import NatsConfig, SimConfig
from smsgate.embedded import EmbeddedNats
from smsgate_api.auth import hash_password
from smsgate_sim.simulator import Simulator

from bench.bench_farm import start_agents, wait_ready
from bench.common import (
    PYTHON,
    Proc,
    command_line,
    free_port,
    median,
    note_load,
    percentile,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
)
from bench.receiver import Receiver

USER, PASSWORD = "bench", "benchpass"
SERVE_API = (
    "import sys, uvloop\n"
    "from smsgate.config import load\n"
    "from smsgate_api.app import run_api\n"
    "uvloop.run(run_api(load(sys.argv[1])))\n"
)
SERVE_CALLBACK = (
    "import asyncio, signal, sys, uvloop\n"
    "from smsgate.config import load\n"
    "from smsgate_callback.service import run_callback\n"
    "async def main():\n"
    "    stop = asyncio.Event()\n"
    "    loop = asyncio.get_running_loop()\n"
    "    for sig in (signal.SIGINT, signal.SIGTERM):\n"
    "        loop.add_signal_handler(sig, stop.set)\n"
    "    await run_callback(load(sys.argv[1]), stop=stop)\n"
    "uvloop.run(main())\n"
)


def start_api(directory: Path, nats_url: str) -> tuple[Proc, int]:
    port = free_port()
    config = {
        "nats": {"url": nats_url},
        "api": {
            "listen": f"127.0.0.1:{port}",
            "access_log": False,
            "users": [{"name": USER, "password": hash_password(PASSWORD)}],
        },
    }
    path = directory / "api.toml"
    path.write_bytes(msgspec.toml.encode(config))
    proc = spawn("api", [PYTHON, "-c", SERVE_API, str(path)], directory)
    wait_port(port)
    return proc, port


def start_callback(directory: Path, nats_url: str, url: str, **callback: object) -> Proc:
    config = {"nats": {"url": nats_url}, "callback": {"url": url, **callback}}
    path = directory / "callback.toml"
    path.write_bytes(msgspec.toml.encode(config))
    return spawn("callback", [PYTHON, "-c", SERVE_CALLBACK, str(path)], directory)


async def accept_to_modem(sim: Simulator, api_port: int, samples: int) -> list[float]:
    """Seconds from sending the request to the PDU's first byte at the modem."""
    base = f"http://127.0.0.1:{api_port}/sendsms"
    latencies: list[float] = []
    seen: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        # Warm up the connection and the API (first scrypt check, routes, NATS).
        for _ in range(3):
            await client.get(base, params=_params("warm"))
        await asyncio.sleep(1.0)
        for index in range(samples):
            text = f"lat{index}"
            sent = time.time()
            response = await client.get(base, params=_params(text))
            response.raise_for_status()
            deadline = time.monotonic() + 10
            while text not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
                for modem in sim.modems.values():
                    for part in modem.sent:
                        if part.text.startswith("lat") and part.pdu_time is not None:
                            seen.setdefault(part.text, part.pdu_time)
            if text in seen:
                latencies.append(seen[text] - sent)
            await asyncio.sleep(0.02)
    return latencies


def _params(text: str) -> dict[str, str]:
    return {
        "username": USER,
        "password": PASSWORD,
        "phonenumber": "10086",
        "message": text,
        "timeout": "0",
        "report": "JSON",
    }


async def inbound_to_callback(sim: Simulator, receiver: Receiver, samples: int) -> list[float]:
    arrivals: dict[str, float] = {}

    def on_request(arrived: float, target: bytes) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target.decode()).query)
        for text in query.get("message", []):
            arrivals.setdefault(text, arrived)

    receiver.on_request = on_request
    latencies: list[float] = []
    ports = list(sim.devices)
    # Warm-up: the first inbound message opens the callback's connection.
    await sim.inject("warm", sender="+15557770000", to_port=ports[0])
    await asyncio.sleep(1.0)
    for index in range(samples):
        text = f"in{index}"
        emitted = time.time()
        await sim.inject(text, sender="+15557770000", to_port=ports[index % len(ports)])
        deadline = time.monotonic() + 10
        while text not in arrivals and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        if text in arrivals:
            latencies.append(arrivals[text] - emitted)
        await asyncio.sleep(0.02)
    return latencies


async def amain(args: argparse.Namespace) -> None:
    load_before = note_load("latency")
    procs: list[Proc] = []
    with workdir("latency") as directory:
        nats = EmbeddedNats(store_dir=directory / "nats")
        nats.start()
        sim = Simulator(
            SimConfig(
                ports=args.ports,
                part_time=args.part_time,
                control="",
                device_dir=str(directory / "dev"),
            )
        )
        receiver = Receiver()
        nc: Client | None = None
        try:
            await sim.start()
            receiver_port = await receiver.start()
            nc = await bus.connect(NatsConfig(url=nats.url), name="bench-latency")
            await bus.provision(nc.jetstream(), NatsConfig(url=nats.url))
            procs += start_agents(directory, nats.url, sim.devices, 1)
            api, api_port = start_api(directory, nats.url)
            procs.append(api)
            procs.append(
                start_callback(
                    directory,
                    nats.url,
                    f"http://127.0.0.1:{receiver_port}/sms",
                    results=False,
                    reports=False,
                )
            )
            await wait_ready(nc, procs, args.ports, 60)
            send = await accept_to_modem(sim, api_port, args.samples)
            print(
                f"accept→modem: n={len(send)} median {median(send) * 1e3:.2f} ms, "
                f"p99 {percentile(send, 99) * 1e3:.2f} ms"
            )
            inbound = await inbound_to_callback(sim, receiver, args.samples)
            print(
                f"inbound→callback: n={len(inbound)} median {median(inbound) * 1e3:.2f} ms, "
                f"p99 {percentile(inbound, 99) * 1e3:.2f} ms"
            )
        finally:
            for proc in reversed(procs):
                proc.stop()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            await receiver.stop()
            await sim.stop()
            nats.stop()

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1e3:.2f}"

    rows = [
        [
            "3. accept → modem (request sent → PDU's first byte)",
            len(send),
            f"{median(send) * 1e3:.2f}",
            ms(send, 90),
            ms(send, 99),
            f"median ≤ 5 ms {verdict(median(send) <= 0.005)}; "
            f"p99 ≤ 20 ms {verdict(percentile(send, 99) <= 0.020)}",
        ],
        [
            "4. inbound (+CMT emitted → callback request received)",
            len(inbound),
            f"{median(inbound) * 1e3:.2f}",
            ms(inbound, 90),
            ms(inbound, 99),
            f"median ≤ 20 ms {verdict(median(inbound) <= 0.020)}",
        ],
    ]
    body = "\n".join(
        [
            f"Idle farm: {args.ports} virtual modems (part time {args.part_time:g} s), one "
            "agent process, one API worker, one callback process, each on its own; one "
            f"sample at a time, {args.samples} samples each, 20 ms apart.",
            "",
            table(["path", "n", "median ms", "p90 ms", "p99 ms", "targets"], rows),
            "",
            f"Load average at the start: {load_before}.",
        ]
    )
    write_section(
        "latency", "3. Accept-to-modem and 4. inbound latency", body, command=command_line()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=4)
    parser.add_argument("--part-time", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=200)
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
