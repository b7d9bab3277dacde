"""Benchmark 5: callback throughput against a bare HTTP client loop to the same receiver.

N send-result events wait in SMS_EVENTS; the callback service (a process of its own,
`start = "all"`, the gateway-style GET, concurrency 8) delivers them to a keep-alive
receiver (`bench/receiver.py`, also a process of its own). The reference is a bare
httpx loop (the library the callback service uses; 8 concurrent requests, one shared
keep-alive client) sending N times the request the service sends for such an event (same
query, same headers, byte for byte the same size) to the same receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import statistics
import time

import httpx
import uvloop
from nats.aio.client import Client
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats
from smsgate_callback.delivery import Target, build_request

from bench.bench_latency import start_callback
from bench.common import (
    PYTHON,
    ROOT,
    Proc,
    command_line,
    cpu_seconds,
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


def send_result(index: int, now: dt.datetime) -> contracts.SendResult:
    message_id = os.urandom(16).hex()
    return contracts.SendResult(
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


async def publish_results(nc: Client, count: int) -> None:
    js = nc.jetstream()
    pending = []
    now = contracts.utcnow()
    for index in range(count):
        event = send_result(index, now)
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


async def bare_loop(port: int, count: int, *, split: bool = False) -> tuple[float, float]:
    """Requests/s of a bare httpx loop with the callback's concurrency, and its CPU s/request.

    One client with a pool of CONCURRENCY connections, or with `split` one client of one
    connection per concurrent request (the layout the service uses).
    """
    # The service's own request for one such event: the same bytes on the wire, so the
    # receiver and the sockets do the same work for both.
    target = Target(url=Target.parse_url(f"http://127.0.0.1:{port}/sms"))
    sample = build_request(target, send_result(0, contracts.utcnow()), attempt=1, now=time.time())
    url = str(sample.url)
    headers = [(k, v) for k, v in sample.headers.raw if k.lower() != b"host"]
    width = 1 if split else CONCURRENCY
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(CONCURRENCY if split else 1):
            client = httpx.AsyncClient(limits=limits, timeout=10, headers=headers)
            # Only what the service sends: no Accept-Encoding or Connection of httpx's own.
            for name in ("Accept-Encoding", "Connection"):
                del client.headers[name]
            clients.append(await stack.enter_async_context(client))
        mine = [clients[i % len(clients)] for i in range(CONCURRENCY)]
        await asyncio.gather(*(client.get(url) for client in mine))  # connections open
        left = count

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await client.get(url)
                response.raise_for_status()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(client) for client in mine))
        cpu = time.process_time() - cpu
        return count / (time.perf_counter() - started), cpu / count


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
            bare_rates: list[float] = []
            callback_rates: list[float] = []
            bare_cpu: list[float] = []
            callback_cpu: list[float] = []
            split_rates: list[float] = []
            split_cpu: list[float] = []
            async with httpx.AsyncClient(timeout=10) as control:
                for round_ in range(args.rounds):
                    bare, cpu = await bare_loop(receiver_port, args.events)
                    bare_rates.append(bare)
                    bare_cpu.append(cpu)
                    print(
                        f"round {round_ + 1} bare httpx loop: {bare:,.0f} req/s, "
                        f"{cpu * 1e6:,.0f} µs CPU/request",
                        flush=True,
                    )
                    split, cpu = await bare_loop(receiver_port, args.events, split=True)
                    split_rates.append(split)
                    split_cpu.append(cpu)
                    print(
                        f"round {round_ + 1} bare httpx loop, a client per connection: "
                        f"{split:,.0f} req/s, {cpu * 1e6:,.0f} µs CPU/request",
                        flush=True,
                    )
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
                        first_cpu = 0.0
                        deadline = time.monotonic() + 300
                        while time.monotonic() < deadline:
                            proc.alive()
                            now_count = await received(control, receiver_port) - before
                            now = time.perf_counter()
                            if first is None and now_count > 0:
                                first, first_count = now, now_count
                                first_cpu = cpu_seconds(proc.popen.pid)
                            if now_count >= args.events:
                                break
                            await asyncio.sleep(0.05)
                        else:
                            raise TimeoutError("the callback service did not deliver every event")
                        assert first is not None
                        rate = (args.events - first_count) / (time.perf_counter() - first)
                        cpu = (cpu_seconds(proc.popen.pid) - first_cpu) / (
                            args.events - first_count
                        )
                    finally:
                        proc.stop()
                    callback_rates.append(rate)
                    callback_cpu.append(cpu)
                    print(
                        f"round {round_ + 1} callback service: {rate:,.0f} events/s, "
                        f"{cpu * 1e6:,.0f} µs CPU/event ({rate / bare:.2f}× the round's bare loop)",
                        flush=True,
                    )
        finally:
            for proc in reversed(procs):
                proc.stop()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            nats.stop()

    bare = statistics.median(bare_rates)
    callback = statistics.median(callback_rates)
    # Each round's service run is set against the bare loop just before it: the load from
    # other jobs on this machine drifts over minutes, and a ratio of two medians would
    # pair the service's round with a bare round from another minute.
    rounds = [c / b for c, b in zip(callback_rates, bare_rates, strict=True)]
    ratio = statistics.median(rounds)
    cpu_bare = statistics.median(bare_cpu) * 1e6
    cpu_callback = statistics.median(callback_cpu) * 1e6
    split = statistics.median(split_rates)
    cpu_split = statistics.median(split_cpu) * 1e6
    split_rounds = [c / b for c, b in zip(callback_rates, split_rates, strict=True)]
    split_ratio = statistics.median(split_rounds)
    split_vs_bare = statistics.median(s / b for s, b in zip(split_rates, bare_rates, strict=True))
    body = "\n".join(
        [
            f"{args.events} send-result events per round, {args.rounds} rounds; callback "
            f"service: gateway-style GET, concurrency {CONCURRENCY}, durable consumer from the "
            "start of the stream, timed from its first delivery to its last. Bare: "
            f"httpx.AsyncClient, {CONCURRENCY} concurrent GETs, each the request the service "
            "sends for such an event (same query and headers). Rates are medians over the "
            "rounds; *vs bare* is the median of each round's ratio (the service against the "
            "bare loop run just before it). CPU is the sender's own process (the bench "
            "process for the bare loop, the service process), median µs per event. The "
            "service keeps one single-connection pool per concurrent call (httpcore checks "
            "every connection of a pool twice per request); the second bare row is the same "
            "loop laid out that way, for comparison (the target is against the first).",
            "",
            table(
                ["sender", "per second", "CPU µs/event", "vs bare", "target"],
                [
                    ["bare httpx loop", f"{bare:,.0f}", f"{cpu_bare:,.0f}", "1.00×", ""],
                    [
                        "bare httpx loop, a client per connection",
                        f"{split:,.0f}",
                        f"{cpu_split:,.0f}",
                        f"{split_vs_bare:.2f}×",
                        "",
                    ],
                    [
                        "**smsgate callback service**",
                        f"{callback:,.0f}",
                        f"{cpu_callback:,.0f}",
                        f"{ratio:.2f}× ({split_ratio:.2f}× the second)",
                        f"≥ 0.7× bare {verdict(ratio >= 0.7)}",
                    ],
                ],
            ),
            "",
            f"Rounds: bare {', '.join(f'{r:,.0f}' for r in bare_rates)}; a client per "
            f"connection {', '.join(f'{r:,.0f}' for r in split_rates)}; callback "
            f"{', '.join(f'{r:,.0f}' for r in callback_rates)}; ratios "
            f"{', '.join(f'{r:.2f}' for r in rounds)} (ratio of the medians "
            f"{callback / bare:.2f}×; of the CPU per event {cpu_bare / cpu_callback:.2f}×).",
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
