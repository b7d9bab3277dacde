"""Benchmark 5: callback throughput against a bare HTTP client loop to the same receiver.

N send-result events wait in SMS_EVENTS; the callback service (a process of its own,
`start = "all"`, the gateway-style GET, concurrency 8) delivers them to a keep-alive
receiver (`bench/receiver.py`, also a process of its own). The reference is a bare
httpx loop (the library the callback service uses; 8 concurrent requests, one shared
keep-alive client) sending N requests of the same shape to the same receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time

import httpx
import uvloop
from nats.aio.client import Client
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats

from bench.bench_latency import start_callback
from bench.common import (
    PYTHON,
    ROOT,
    Proc,
    command_line,
    free_port,
    note_load,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
)

CONCURRENCY = 8


async def publish_results(nc: Client, count: int) -> None:
    js = nc.jetstream()
    pending = []
    now = contracts.utcnow()
    for index in range(count):
        message_id = os.urandom(16).hex()
        event = contracts.SendResult(
            event_id=f"{message_id}:result",
            port=f"lte-{index % 32 + 1}",
            port_number=index % 32 + 1,
            imsi="001010000000001",
            time=now,
            id=message_id,
            caller_id=None,
            to="+15550200001",
            status=contracts.SendStatus.SENT,
            reason=None,
            parts=[contracts.PartResult(sequence=1, reference=index % 256, error=None)],
            user="bench",
        )
        pending.append(
            await js.publish_async(
                subjects.event("result", event.port),
                contracts.encode(event),
                headers={"Nats-Msg-Id": event.event_id},
            )
        )
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def received(client: httpx.AsyncClient, port: int) -> int:
    response = await client.get(f"http://127.0.0.1:{port}/__count")
    return int(response.text)


async def bare_loop(port: int, count: int) -> float:
    """Requests/s of a bare httpx loop with the callback's concurrency."""
    url = (
        f"http://127.0.0.1:{port}/sms?type=SMS-Status-Result&id=0123456789abcdef"
        "&status=Sent&num=%2B15550200001&port=1&portname=lte-1&imsi=001010000000001"
        "&time=2026-11-24+21%3A40%3A07"
    )
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await client.get(url)
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await client.get(url)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


async def amain(args: argparse.Namespace) -> None:
    load_before = note_load("callback")
    with workdir("callback") as directory:
        nats = EmbeddedNats(store_dir=directory / "nats")
        nats.start()
        procs: list[Proc] = []
        nc: Client | None = None
        try:
            receiver_port = free_port()
            procs.append(
                spawn(
                    "receiver",
                    [PYTHON, "-m", "bench.receiver", str(receiver_port)],
                    directory,
                    env={"PYTHONPATH": str(ROOT)},
                )
            )
            wait_port(receiver_port)
            nc = await bus.connect(NatsConfig(url=nats.url), name="bench-callback")
            await bus.provision(nc.jetstream(), NatsConfig(url=nats.url))
            bare_rates = []
            callback_rates = []
            async with httpx.AsyncClient(timeout=10) as control:
                for round_ in range(args.rounds):
                    bare = await bare_loop(receiver_port, args.events)
                    bare_rates.append(bare)
                    print(f"round {round_ + 1} bare httpx loop: {bare:,.0f} req/s", flush=True)
                    await nc.jetstream().purge_stream(subjects.EVENTS_STREAM)
                    await publish_results(nc, args.events)
                    before = await received(control, receiver_port)
                    proc = start_callback(
                        directory,
                        nats.url,
                        f"http://127.0.0.1:{receiver_port}/sms",
                        start="all",
                        concurrency=CONCURRENCY,
                    )
                    try:
                        first: float | None = None
                        first_count = 0
                        deadline = time.monotonic() + 300
                        while time.monotonic() < deadline:
                            proc.alive()
                            now_count = await received(control, receiver_port) - before
                            now = time.perf_counter()
                            if first is None and now_count > 0:
                                first, first_count = now, now_count
                            if now_count >= args.events:
                                break
                            await asyncio.sleep(0.05)
                        else:
                            raise TimeoutError("the callback service did not deliver every event")
                        assert first is not None
                        rate = (args.events - first_count) / (time.perf_counter() - first)
                    finally:
                        proc.stop()
                    callback_rates.append(rate)
                    print(f"round {round_ + 1} callback service: {rate:,.0f} events/s", flush=True)
        finally:
            for proc in reversed(procs):
                proc.stop()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            nats.stop()

    bare = sorted(bare_rates)[len(bare_rates) // 2]
    callback = sorted(callback_rates)[len(callback_rates) // 2]
    ratio = callback / bare
    body = "\n".join(
        [
            f"{args.events} send-result events per round, {args.rounds} rounds (median shown); "
            f"callback service: gateway-style GET, concurrency {CONCURRENCY}, durable "
            "consumer from the start of the stream, timed from its first delivery to its "
            f"last. Bare: httpx.AsyncClient, {CONCURRENCY} concurrent GETs of the same shape.",
            "",
            table(
                ["sender", "per second", "vs bare", "target"],
                [
                    ["bare httpx loop", f"{bare:,.0f}", "1.00×", ""],
                    [
                        "**smsgate callback service**",
                        f"{callback:,.0f}",
                        f"{ratio:.2f}×",
                        f"≥ 0.7× bare {verdict(ratio >= 0.7)}",
                    ],
                ],
            ),
            "",
            f"Rounds: bare {', '.join(f'{r:,.0f}' for r in bare_rates)}; callback "
            f"{', '.join(f'{r:,.0f}' for r in callback_rates)}.",
            f"Load average at the start: {load_before}.",
        ]
    )
    write_section("callback", "5. Callback throughput", body, command=command_line())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
