"""Soak: does the agent's memory grow with the messages it sends with reports requested?

One `smsgate agent` process drives P virtual modems (this process runs the simulator and
a fresh nats-server). Jobs asking for a delivery report go into SMS_SEND at a steady rate
for the whole run; the simulator reports every part a moment after it is sent. Every
`--sample` seconds the agent's resident memory is read from /proc, beside the number of
send results and report events so far.

The figure is the slope of RSS against messages sent, fitted by least squares over the
samples after the warm-up: KiB per message (and per minute). A memory that holds settled
messages shows a steady slope; a flat one shows noise around zero.

`--agent-python` runs the agent from another checkout's environment, e.g. main's
(`/work/main/.venv/bin/python`), to measure the two the same way on the same machine.
Nothing here asserts a figure: the machine is shared, and the load is printed.

    python -m bench.bench_soak_reports --minutes 30 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig, SimConfig
from smsgate.embedded import EmbeddedNats
from smsgate_sim.simulator import Simulator

from bench.bench_farm import wait_ready
from bench.common import PYTHON, Proc, Use, every, note_load, paced, slope, spawn, table, workdir


@dataclass(frozen=True)
class Sample:
    elapsed: float  # seconds since the load began
    results: int  # send results so far
    reports: int  # report events so far
    agent: Use  # the agent's memory, fds and CPU so far


@dataclass
class Counts:
    results: int = 0
    reports: int = 0

    async def on_event(self, msg: Msg) -> None:
        kind = msg.subject.split(".")[2]  # sms.event.<kind>.<port>
        if kind == "result":
            self.results += 1
        elif kind == "report":
            self.reports += 1


def agent_config(directory: Path, nats_url: str, devices: dict[str, str]) -> Path:
    """Only the keys that differ from the defaults, so an older agent reads it too."""
    ports = [{"name": name, "device": device} for name, device in sorted(devices.items())]
    config = {
        "nats": {"url": nats_url},
        "agent": {"name": "soak", "policy": {"min_interval": 0, "jitter": 0}, "ports": ports},
    }
    path = directory / "soak.toml"
    path.write_bytes(msgspec.toml.encode(config))
    return path


async def feed(nc: Client, rate: float, seconds: float) -> int:
    """Publish `rate` jobs a second for `seconds`; returns how many."""
    js = nc.jetstream()

    async def publish(index: int) -> None:
        job = contracts.SendJob(
            id=os.urandom(16).hex(),
            to=f"+1555030{index % 10000:04d}",
            text=f"soak {index}",
            status_report=True,
            created=contracts.utcnow(),
        )
        ack = await js.publish_async(
            subjects.SEND_ANY, contracts.encode(job), headers={"Nats-Msg-Id": job.id}
        )
        await ack

    return await paced(rate, seconds, publish)


async def soak(args: argparse.Namespace, directory: Path) -> list[Sample]:
    nats = EmbeddedNats(store_dir=directory / "nats")
    nats.start()
    sim = Simulator(
        SimConfig(
            ports=args.ports,
            part_time=0.01,
            delivery_delay=(0.01, 0.05),
            report_delay=(0.05, 0.5),
            control="",
            sent_log=1000,
            device_dir=str(directory / "dev"),
        )
    )
    agent: Proc | None = None
    nc: Client | None = None
    try:
        await sim.start()
        config = NatsConfig(url=nats.url)
        nc = await bus.connect(config, name="bench-soak")
        await bus.provision(nc.jetstream(), config)
        path = agent_config(directory, nats.url, sim.devices)
        argv = [args.agent_python, "-m", "smsgate_cli", "agent", "-c", str(path)]
        agent = spawn("soak", argv, directory)
        await wait_ready(nc, [agent], args.ports, 120)
        counts = Counts()
        await nc.subscribe(subjects.EVENTS_WILDCARD, cb=counts.on_event)
        samples: list[Sample] = []
        start = time.monotonic()
        running = agent

        async def sample() -> None:
            running.alive()
            taken = Sample(
                time.monotonic() - start, counts.results, counts.reports, Use.of(running.popen.pid)
            )
            samples.append(taken)
            print(
                f"  {taken.elapsed:7.0f} s  results {taken.results:7d}  reports "
                f"{taken.reports:7d}  RSS {taken.agent.rss / 2**20:7.1f} MiB",
                flush=True,
            )

        stop = asyncio.Event()
        sampler = asyncio.create_task(every(args.sample, stop, sample))
        sent = await feed(nc, args.rate, args.minutes * 60)
        await asyncio.sleep(2.0)  # the last reports
        stop.set()
        await sampler
        print(f"  published {sent} jobs; {counts.results} results, {counts.reports} reports")
        return samples
    finally:
        if agent is not None:
            agent.stop(timeout=30)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        await sim.stop()
        nats.stop()


def summary(samples: list[Sample], warmup: float) -> str:
    kept = [s for s in samples if s.elapsed >= warmup]
    if len(kept) < 2:
        return "too few samples after the warm-up"
    per_message = slope([float(s.results) for s in kept], [s.agent.rss / 1024 for s in kept])
    per_minute = slope([s.elapsed / 60 for s in kept], [s.agent.rss / 1024 for s in kept])
    first, last = kept[0], kept[-1]
    cpu = (last.agent.cpu - first.agent.cpu) / max(last.results - first.results, 1)
    rows = [
        [
            f"{last.elapsed - first.elapsed:.0f}",
            last.results - first.results,
            last.reports - first.reports,
            f"{first.agent.rss / 2**20:.1f} → {last.agent.rss / 2**20:.1f}",
            f"{per_message:.3f}",
            f"{per_minute:.1f}",
            f"{cpu * 1e6:.0f}",
        ]
    ]
    header = [
        "s after warm-up",
        "results",
        "reports",
        "RSS MiB",
        "KiB/message",
        "KiB/min",
        "agent CPU µs/message",
    ]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--ports", type=int, default=4)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the fit")
    parser.add_argument("--agent-python", default=PYTHON, help="the agent's interpreter")
    args = parser.parse_args()
    note_load("soak-reports")
    with workdir("soak") as directory:
        samples = uvloop.run(soak(args, directory))
    print(summary(samples, args.warmup))


if __name__ == "__main__":
    main()
