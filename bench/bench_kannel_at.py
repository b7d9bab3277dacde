"""Benchmark 2 (one modem) against Kannel's AT driver on an identical virtual modem.

Two virtual modems with the same part time L (0.5 s by default) on ptys: smsgate's agent
drives one, Kannel's `smsc = at` drives the other (through the pty's stable link). Both
get N single-part messages at once, without delivery reports, per-SIM pacing off on our
side (policy min_interval=0, jitter=0; Kannel has none to turn off). Parts/s per modem
come from the simulator's sent log: (n - 1) / (last - first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Sequence

import httpx
import uvloop
from nats.aio.client import Client
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig, SimConfig
from smsgate.embedded import EmbeddedNats
from smsgate_sim.simulator import Simulator
from smsgate_sim.stats import SentPart

from bench import kannel
from bench.bench_farm import start_agents, wait_ready
from bench.common import (
    Proc,
    command_line,
    note_load,
    table,
    verdict,
    workdir,
    write_section,
)


def rate(parts: Sequence[SentPart]) -> float:
    if len(parts) < 2:
        return float("nan")
    return (len(parts) - 1) / (parts[-1].time - parts[0].time)


def gaps(parts: Sequence[SentPart]) -> list[float]:
    return [b.time - a.time for a, b in itertools.pairwise(parts)]


async def wait_parts(sim: Simulator, port: str, count: int, limit: float) -> list[SentPart]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sent = sim.sent(port)
        if len(sent) >= count:
            return sent
        await asyncio.sleep(0.1)
    return sim.sent(port)


async def amain(args: argparse.Namespace) -> None:
    load_before = note_load("kannel-at")
    ours_parts: list[SentPart] = []
    kannel_parts: list[SentPart] = []
    kannel_note = ""
    with workdir("kannel-at") as directory:
        nats = EmbeddedNats(store_dir=directory / "nats")
        nats.start()
        sim = Simulator(
            SimConfig(
                ports=2,
                part_time=args.part_time,
                control="",
                device_dir=str(directory / "dev"),
            )
        )
        procs: list[Proc] = []
        nc: Client | None = None
        k: kannel.Kannel | None = None
        try:
            await sim.start()
            # --- smsgate: one agent, one port (lte-1)
            nc = await bus.connect(NatsConfig(url=nats.url), name="bench-kannel-at")
            await bus.provision(nc.jetstream(), NatsConfig(url=nats.url))
            procs += start_agents(directory, nats.url, {"lte-1": sim.devices["lte-1"]}, 1)
            await wait_ready(nc, procs, 1, 60)
            js = nc.jetstream()
            now = contracts.utcnow()
            for index in range(args.messages):
                job = contracts.SendJob(
                    id=os.urandom(16).hex(),
                    to="+15550200001",
                    text=f"ours {index}",
                    status_report=False,
                    created=now,
                )
                await js.publish(
                    subjects.SEND_ANY, contracts.encode(job), headers={"Nats-Msg-Id": job.id}
                )
            ours_parts = await wait_parts(
                sim, "lte-1", args.messages, args.messages * args.part_time * 3 + 30
            )
            for proc in procs:
                proc.stop()
            print(f"smsgate: {len(ours_parts)} parts, {rate(ours_parts):.3f} parts/s")
            # --- Kannel: bearerbox + smsbox, smsc = at on lte-2's pty link
            why = kannel.available()
            if why is not None:
                kannel_note = f"Kannel did not run: {why}."
            else:
                k = kannel.start(directory / "kannel", at_devices={"at1": sim.devices["lte-2"]})
                await asyncio.sleep(args.kannel_settle)
                async with httpx.AsyncClient(timeout=10) as client:
                    for index in range(args.messages):
                        response = await client.get(
                            k.sendsms_url(to="%2B15550200001", text=f"kannel+{index}")
                        )
                        if response.status_code >= 300:
                            raise RuntimeError(
                                f"Kannel sendsms: {response.status_code} {response.text}"
                            )
                kannel_parts = await wait_parts(sim, "lte-2", args.messages, args.messages * 5 + 60)
                print(f"Kannel: {len(kannel_parts)} parts, {rate(kannel_parts):.3f} parts/s")
                if len(kannel_parts) < 2:
                    kannel_note = (
                        "Kannel's AT driver sent fewer than 2 parts; see its log "
                        "(bearerbox.log in the run directory, kept with SMSGATE_BENCH_KEEP=1)."
                    )
        finally:
            if k is not None:
                k.stop()
            for proc in procs:
                proc.stop()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            await sim.stop()
            nats.stop()

    ours_rate, kannel_rate = rate(ours_parts), rate(kannel_parts)
    ratio = ours_rate / kannel_rate if kannel_parts else float("nan")

    def gap_text(parts: Sequence[SentPart]) -> str:
        values = sorted(gaps(parts))
        if not values:
            return "-"
        return f"{values[len(values) // 2]:.3f}"

    rows = [
        [
            "**smsgate agent**",
            len(ours_parts),
            f"{ours_rate:.3f}",
            gap_text(ours_parts),
            f"{ratio:.2f}×",
            f"≥ 2× Kannel {verdict(ratio >= 2.0)}",
        ],
        [
            "Kannel `smsc = at`",
            len(kannel_parts),
            f"{kannel_rate:.3f}",
            gap_text(kannel_parts),
            "1.00×",
            "",
        ],
    ]
    body = "\n".join(
        [
            f"One virtual modem each, part time L = {args.part_time:g} s (physical limit "
            f"{1 / args.part_time:.1f} parts/s), {args.messages} single-part messages "
            "queued at once, no delivery reports, no per-SIM pacing.",
            "",
            table(
                ["driver", "parts", "parts/s", "median gap between +CMGS s", "ratio", "target"],
                rows,
            ),
            "",
            kannel_note,
            f"Load average at the start: {load_before}.",
        ]
    )
    write_section(
        "kannel-at",
        "2b. One modem vs Kannel's AT driver (0. the peer)",
        body,
        command=command_line(),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part-time", type=float, default=0.5)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--kannel-settle", type=float, default=5.0, help="s for the AT init")
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
