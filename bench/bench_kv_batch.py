"""`scripts/bench kv-batch`: is a JetStream atomic batch a cheaper way for the report
ledger to write a record and its slot than two compare-and-set writes one after the other?

The ledger files every sent message as a record (`m.<due>.<id>`, a plain put) and its
slot (`s.<sim>.<mr>`, created or updated on its revision), and after the report deletes
the one and updates the other. An atomic batch (nats-server >= 2.12, `allow_atomic` on
the stream; ADR-50: headers `Nats-Batch-Id`, `Nats-Batch-Sequence`, and
`Nats-Batch-Commit` on the last message, which alone asks for the ack) would make each
pair one round trip. Measured here on one nats-server, in a stream like the ledger's
bucket (file storage), and in its in-memory twin to see where the time goes:

- one by one: the put, its ack awaited, then the create-only slot write, its ack awaited;
- batch: both in one atomic batch, one ack.

Latency of a pair at concurrency 1, and pairs/s with 64 writers at once; nats-server CPU
per pair over the concurrent phase. The farm's agent writes ~2 such pairs per message at
256 messages/s (P = 256, L = 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from smsgate import bus
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats

from bench.common import (
    command_line,
    cpu_seconds,
    median,
    note_load,
    percentile,
    table,
    workdir,
    write_section,
)

EXPECT_ABSENT = {"Nats-Expected-Last-Subject-Sequence": "0"}
Pair = Callable[[str], Awaitable[None]]


class Writer:
    """Writes a record and its slot to stream `stream` (subjects `<stream>.>`)."""

    def __init__(self, nc: Client, stream: str) -> None:
        self.nc = nc
        self.stream = stream
        self.batches = 0

    async def _ack(self, subject: str, headers: dict[str, str]) -> None:
        reply: Msg = await self.nc.request(subject, b"x" * 200, timeout=10, headers=headers)
        if b'"error"' in reply.data:
            raise RuntimeError(reply.data.decode())

    async def one_by_one(self, key: str) -> None:
        await self._ack(f"{self.stream}.m.{key}", {})
        await self._ack(f"{self.stream}.s.{key}", EXPECT_ABSENT)

    async def batch(self, key: str) -> None:
        self.batches += 1
        batch = f"b{self.batches}-{key}"
        first = {"Nats-Batch-Id": batch, "Nats-Batch-Sequence": "1"}
        await self.nc.publish(f"{self.stream}.m.{key}", b"x" * 200, headers=first)
        last = {**EXPECT_ABSENT, "Nats-Batch-Id": batch, "Nats-Batch-Sequence": "2"}
        await self._ack(f"{self.stream}.s.{key}", {**last, "Nats-Batch-Commit": "1"})


async def _latencies(pair: Pair, prefix: str, count: int) -> list[float]:
    took = []
    for n in range(count):
        start = time.perf_counter()
        await pair(f"{prefix}{n}")
        took.append(time.perf_counter() - start)
    return took


async def _rate(pair: Pair, prefix: str, writers: int, each: int) -> float:
    async def writer(w: int) -> None:
        for n in range(each):
            await pair(f"{prefix}{w}-{n}")

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return writers * each / (time.perf_counter() - start)


async def amain(args: argparse.Namespace) -> None:
    load = note_load("kv-batch")
    rows = []
    with workdir("kv-batch") as directory:
        server = EmbeddedNats(store_dir=directory / "nats")
        server.start()
        try:
            nc = await bus.connect(NatsConfig(url=server.url), name="bench-kv-batch")
            js = nc.jetstream()
            for storage in (StorageType.FILE, StorageType.MEMORY):
                stream = f"LEDGER_{storage.value.upper()}"
                await js.add_stream(
                    StreamConfig(
                        name=stream,
                        subjects=[f"{stream}.>"],
                        storage=storage,
                        max_msgs_per_subject=1,
                        allow_atomic=True,
                    )
                )
                writer = Writer(nc, stream)
                for name, pair in (("one by one", writer.one_by_one), ("batch", writer.batch)):
                    took = await _latencies(pair, f"l{name[0]}", args.pairs)
                    assert server.pid is not None
                    cpu = cpu_seconds(server.pid)
                    rate = await _rate(pair, f"r{name[0]}", args.writers, args.pairs // 4)
                    cpu = cpu_seconds(server.pid) - cpu
                    done = args.writers * (args.pairs // 4)
                    rows.append(
                        [
                            storage.value,
                            name,
                            f"{median(took) * 1e3:.2f}",
                            f"{percentile(took, 99) * 1e3:.2f}",
                            f"{rate:,.0f}",
                            f"{cpu / done * 1e6:,.0f}",
                        ]
                    )
                    print(" | ".join(rows[-1]), flush=True)
            await nc.close()
        finally:
            server.stop()
    header = [
        "storage",
        "a record and its slot",
        "latency p50 ms",
        "p99 ms",
        f"pairs/s, {args.writers} writers",
        "nats-server µs CPU per pair",
    ]
    body = "\n".join(
        [
            f"{args.pairs} pairs one after another, then {args.writers} writers of "
            f"{args.pairs // 4} pairs each at once, per storage and way. Load average at the "
            f"start: {load}.",
            "",
            table(header, rows),
        ]
    )
    write_section(
        "kv-batch",
        "3b. The ledger's writes: one by one or as an atomic batch",
        body,
        command=command_line(),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--writers", type=int, default=64)
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
