"""What one KV key costs nats-server in memory, and what does not grow with keys.

A nats-server (JetStream, file store, monitoring and pprof on) and one bucket configured
as `sms_sending` is (history 1, the 7-day TTL). N unique keys are written with values of
the size a send claim has; after every step the server's RSS (`/varz mem`), its live Go
heap right after a collection, the heap the collector allows before the next one, and the
free heap still resident are read (bench/bus_memory.py). The slope of the live heap over
the keys stored is the per-key cost of the server's per-subject index; what RSS adds on
top is collector headroom, which scales with the live heap, not with the keys.

Then the same keys are written again with a per-message TTL (`Nats-TTL`, the bucket
allowing it), and read once they have expired: keys that are gone cost nothing.

    scripts/bench bus-keys [--keys 200000] [--steps 8] [--value 300] [--gomemlimit MiB]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import uvloop
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from smsgate import bus, subjects
from smsgate.config import NatsConfig
from smsgate.embedded import nats_server_binary

from bench import bus_memory
from bench.common import command_line as _command_line
from bench.common import (
    free_port,
    note_load,
    processes,
    slope,
    spawn,
    table,
    wait_port,
    workdir,
    write_section,
)

BATCH = 1000  # publishes in flight at once
MIB = 2**20


def claim_bucket(name: str, *, msg_ttl: bool) -> KeyValueConfig:
    """A bucket configured as `sms_sending` is (bus.bucket_configs), under `name`."""
    config = bus.bucket_configs(NatsConfig())[subjects.SENDING_BUCKET]
    config.bucket = name
    if msg_ttl:
        config.limit_marker_ttl = 1.0  # turns on allow_msg_ttl; markers expire in 1 s
    return config


async def write(
    js: JetStreamContext, bucket: str, first: int, count: int, value: bytes, ttl: float | None
) -> None:
    """Keys `first` to `first + count` of `bucket`, `BATCH` publishes in flight at a time."""
    headers = {"Nats-TTL": f"{ttl:g}s"} if ttl is not None else None
    for start in range(first, first + count, BATCH):
        end = min(start + BATCH, first + count)
        await asyncio.gather(
            *(
                js.publish(f"$KV.{bucket}.soak{index:09d}", value, headers=headers)
                for index in range(start, end)
            )
        )


async def remove(js: JetStreamContext, bucket: str, count: int) -> None:
    """Delete keys 0 to `count` as nats-py's KV delete() does: a marker in each one's place."""
    for start in range(0, count, BATCH):
        await asyncio.gather(
            *(
                js.publish(f"$KV.{bucket}.soak{index:09d}", b"", headers={"KV-Operation": "DEL"})
                for index in range(start, min(start + BATCH, count))
            )
        )


async def run(
    directory: Path, args: argparse.Namespace, gomemlimit: int | None
) -> list[list[object]]:
    port, monitor, profile = free_port(), free_port(), free_port()
    env = {"GOMEMLIMIT": f"{gomemlimit}MiB"} if gomemlimit else None
    argv = [nats_server_binary(), "-js", "-sd", str(directory / "nats"), "-a", "127.0.0.1"]
    argv += ["-p", str(port), "-m", str(monitor), "--profile", str(profile)]
    rows: list[list[object]] = []
    with processes() as procs:
        procs.append(spawn("nats-server", argv, directory, env=env))
        wait_port(port)
        wait_port(profile)
        urls = (f"http://127.0.0.1:{monitor}", f"http://127.0.0.1:{profile}")
        nc = await bus.connect(NatsConfig(url=f"nats://127.0.0.1:{port}"), name="bench-keys")
        js = nc.jetstream()
        value = os.urandom(args.value // 2).hex().encode()
        try:

            def sample(phase: str, keys: int) -> bus_memory.BusMemory:
                reading = bus_memory.read(*urls)
                rows.append(
                    [
                        phase,
                        f"{keys:,}",
                        f"{reading.store_bytes / MIB:.1f}",
                        f"{reading.rss / MIB:.1f}",
                        f"{reading.live / MIB:.1f}",
                        f"{reading.next_gc / MIB:.1f}",
                        f"{reading.heap_idle / MIB:.1f}",
                        f"{reading.released / MIB:.1f}",
                        ", ".join(f"{f} {b / MIB:.1f}" for f, b in reading.top[:3]),
                    ]
                )
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
                return reading

            await js.create_key_value(claim_bucket("claims", msg_ttl=False))
            readings = [(0, sample("empty bucket", 0))]
            step = args.keys // args.steps
            for done in range(step, args.keys + 1, step):
                await write(js, "claims", done - step, step, value, None)
                readings.append((done, sample("7-day keys", done)))
            keys = [float(k) for k, _ in readings]
            per_key_live = slope(keys, [float(r.live) for _, r in readings])
            per_key_rss = slope(keys, [float(r.rss) for _, r in readings])
            per_key_disk = slope(keys, [float(r.store_bytes) for _, r in readings])
            await remove(js, "claims", args.keys)
            sample("each key deleted (its marker kept)", args.keys)
            await js.delete_key_value("claims")
            sample("bucket deleted", 0)

            await js.create_key_value(claim_bucket("expiring", msg_ttl=True))
            await write(js, "expiring", 0, args.keys, value, args.ttl)
            sample(f"{args.ttl:g} s TTL keys", args.keys)
            deadline = time.monotonic() + args.ttl + 30
            while time.monotonic() < deadline:
                await asyncio.sleep(5)
                info = await js.stream_info("KV_expiring")
                if info.state.messages == 0:
                    break
            left = (await js.stream_info("KV_expiring")).state.messages
            sample("after the TTL", left)
        finally:
            await nc.close()
    rows.append(
        [
            "**per key**",
            "",
            f"{per_key_disk:.0f} B",
            f"{per_key_rss:.0f} B",
            f"{per_key_live:.0f} B",
            "",
            "",
            "",
            "",
        ]
    )
    return rows


HEADER = [
    "phase",
    "keys",
    "stored MiB",
    "RSS MiB",
    "live heap MiB",
    "next GC at MiB",
    "idle heap MiB",
    "released MiB",
    "largest live owners (MiB)",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--value", type=int, default=300, help="bytes per value (a claim)")
    parser.add_argument("--ttl", type=float, default=30.0, help="seconds, the expiring keys")
    parser.add_argument("--gomemlimit", type=int, help="MiB, GOMEMLIMIT of the server")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md")
    args = parser.parse_args(argv)
    before = note_load("bus-keys")
    tables = []
    for limit in dict.fromkeys([None, args.gomemlimit]):
        with workdir("bus-keys") as directory:
            rows = uvloop.run(run(directory, args, limit))
        tables += [
            "",
            f"GOMEMLIMIT {f'{limit} MiB' if limit else 'unset (as nats-server runs by default)'}:",
            "",
            table(HEADER, rows),
        ]
    body = "\n".join(
        [
            f"One KV bucket configured as `sms_sending` (history 1, 7-day TTL), {args.keys:,} "
            f"unique keys of {args.value} B values written {args.keys // args.steps:,} at a "
            "time, then each deleted (a marker in its place, as KV delete leaves); then the "
            "bucket deleted, and the same keys written with a per-message "
            f"TTL of {args.ttl:g} s. nats-server's RSS is `/varz mem`; the live heap, the "
            "heap size of the next collection and the idle heap are the Go runtime's "
            "MemStats right after a forced collection (pprof heap profile, `gc=1`), and the "
            f"largest live owners are its allocation sites. Load average before {before}.",
            *tables,
        ]
    )
    print(body)
    if not args.no_write:
        title = "9c. What one KV key costs nats-server"
        write_section("bus-keys", title, body, command=_command_line())


if __name__ == "__main__":
    main()
