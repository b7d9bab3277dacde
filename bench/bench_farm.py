"""Benchmarks 2 and 6: farm saturation against the physical limit P/L, and cost per part/port.

P virtual modems (this process runs the simulator, on uvloop) each take exactly L seconds
per part. A or more `smsgate agent` processes drive them over real ptys, fed from a fresh
nats-server. Jobs go straight into SMS_SEND (the API is benchmark 1), enough to keep every
port busy for the whole window. Delivered parts/s come from the simulator's sent log
(+CMGS answer times) over a window that starts once every port is sending; the physical
limit is P/L. Per-SIM pacing is off (policy min_interval=0, jitter=0).

Cost: agent CPU (user+system, from /proc) over the window per part sent, and agent
resident memory per port. The simulator's CPU is reported separately.
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
from smsgate.config import AgentConfig, AgentPort, Config, NatsConfig, SendPolicy, SimConfig
from smsgate.embedded import EmbeddedNats
from smsgate_sim.simulator import Simulator
from smsgate_sim.stats import SentPart

from bench.common import (
    PYTHON,
    Proc,
    command_line,
    cpu_seconds,
    note_load,
    percentile,
    rss_bytes,
    spawn,
    table,
    verdict,
    workdir,
    write_section,
)

FAST = SendPolicy(min_interval=0.0, jitter=0.0)


@dataclass
class FarmRun:
    ports: int
    agents: int
    part_time: float
    window: float
    parts: int
    rate: float
    agent_cpu: float  # seconds over the window, all agents
    sim_cpu: float  # seconds over the window, this process (simulator + driver)
    agent_rss: int  # bytes, all agents, at the end
    ready_after: float  # seconds from agent start to every port ready
    turnaround: list[float]  # per port: +CMGS answer to the next PDU's first byte, seconds
    wire: dict[str, float] | None = None  # messages per part on the bus, by kind (--wire)

    @property
    def limit(self) -> float:
        return self.ports / self.part_time

    @property
    def ratio(self) -> float:
        return self.rate / self.limit


def _without_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def write_agent_config(
    directory: Path,
    nats_url: str,
    name: str,
    devices: dict[str, str],
    *,
    report_routing: str = "stored",
    **agent: object,
) -> Path:
    ports = [
        msgspec.convert(
            {"name": port, "device": device, "report_routing": report_routing}, AgentPort
        )
        for port, device in sorted(devices.items())
    ]
    settings = AgentConfig(name=name, ports=ports, policy=FAST)
    config = Config(nats=NatsConfig(url=nats_url), agent=msgspec.structs.replace(settings, **agent))
    path = directory / f"{name}.toml"
    path.write_bytes(msgspec.toml.encode(_without_none(msgspec.to_builtins(config))))
    return path


def start_agents(
    directory: Path,
    nats_url: str,
    devices: dict[str, str],
    count: int,
    *,
    report_routing: str = "stored",
    **agent: object,
) -> list[Proc]:
    names = sorted(devices, key=lambda n: int(n.rsplit("-", 1)[1]))
    procs = []
    for index in range(count):
        mine = {name: devices[name] for name in names[index::count]}
        name = f"bench-{index + 1}"
        path = write_agent_config(
            directory, nats_url, name, mine, report_routing=report_routing, **agent
        )
        procs.append(
            spawn(name, [PYTHON, "-m", "smsgate_cli", "agent", "-c", str(path)], directory)
        )
    return procs


async def ports_ready(nc: Client, expected: int) -> int:
    """How many ports the sms_ports KV shows ready."""
    kv = await nc.jetstream().key_value(subjects.PORTS_BUCKET)
    try:
        keys = await kv.keys()
    except Exception:
        return 0
    ready = 0
    for key in keys:
        with contextlib.suppress(Exception):
            entry = await kv.get(key)
            state = contracts.decode(entry.value or b"", contracts.PortState)
            if state.status is contracts.PortStatus.READY:
                ready += 1
    return ready


async def wait_ready(nc: Client, procs: list[Proc], expected: int, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        for proc in procs:
            proc.alive()
        if await ports_ready(nc, expected) >= expected:
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise TimeoutError(f"not every port ready after {limit}s")


async def publish_jobs(nc: Client, count: int, *, status_report: bool) -> None:
    js = nc.jetstream()
    now = contracts.utcnow()
    pending = []
    for index in range(count):
        job = contracts.SendJob(
            id=os.urandom(16).hex(),
            to=f"+1555020{index % 10000:04d}",
            text=f"bench {index}",
            status_report=status_report,
            created=now,
        )
        pending.append(
            await js.publish_async(
                subjects.SEND_ANY, contracts.encode(job), headers={"Nats-Msg-Id": job.id}
            )
        )
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def run_farm(
    directory: Path,
    *,
    ports: int,
    agents: int,
    part_time: float,
    window: float,
    status_report: bool,
    ready_limit: float,
    report_routing: str = "stored",
    wire: bool = False,
) -> FarmRun:
    nats = EmbeddedNats(store_dir=directory / f"nats-{ports}-{agents}")
    nats.start()
    sim = Simulator(
        SimConfig(
            ports=ports,
            part_time=part_time,
            control="",
            sent_log=int(window / part_time) + 100,
            device_dir=str(directory / f"dev-{ports}-{agents}"),
        )
    )
    procs: list[Proc] = []
    nc: Client | None = None
    try:
        await sim.start()
        if os.environ.get("SMSGATE_BENCH_DEBUG"):
            _trace(sim, "lte-1")
        nc = await bus.connect(NatsConfig(url=nats.url), name="bench-farm")
        await bus.provision(nc.jetstream(), NatsConfig(url=nats.url))
        procs = start_agents(
            directory, nats.url, sim.devices, agents, report_routing=report_routing
        )
        ready_after = await wait_ready(nc, procs, ports, ready_limit)
        print(f"  P={ports} A={agents}: every port ready after {ready_after:.1f}s")
        warmup = max(3.0, 3 * part_time)
        # Enough for warm-up + window + a margin, so no port runs dry inside the window.
        jobs = int(ports / part_time * (warmup + window + 3.0))
        t_publish = time.time()
        await publish_jobs(nc, jobs, status_report=status_report)
        print(f"  published {jobs} jobs in {time.time() - t_publish:.1f}s")
        await asyncio.sleep(max(0.0, t_publish + warmup - time.time()))
        counter = await WireCounter.start(nats.url) if wire else None
        t0 = time.time()
        agent_cpu0 = sum(cpu_seconds(p.popen.pid) for p in procs)
        sim_cpu0 = time.process_time()
        await asyncio.sleep(window)
        t1 = time.time()
        agent_cpu = sum(cpu_seconds(p.popen.pid) for p in procs) - agent_cpu0
        sim_cpu = time.process_time() - sim_cpu0
        rss = sum(rss_bytes(p.popen.pid) for p in procs)
        counts = await counter.stop() if counter is not None else None
        sent = sim.sent()
        parts = sum(1 for part in sent if t0 <= part.time < t1)
        turnaround = _turnaround(sent, t0, t1)
        if os.environ.get("SMSGATE_BENCH_DEBUG"):
            for moment, direction, data in TRACE[-60:]:
                print(f"    {moment - t1:+.4f} {direction} {data!r}")
        rate = parts / (t1 - t0)
        result = FarmRun(
            ports=ports,
            agents=agents,
            part_time=part_time,
            window=t1 - t0,
            parts=parts,
            rate=rate,
            agent_cpu=agent_cpu,
            sim_cpu=sim_cpu,
            agent_rss=rss,
            ready_after=ready_after,
            turnaround=turnaround,
            wire={k: n / max(parts, 1) for k, n in counts.items()} if counts else None,
        )
        if result.wire is not None:
            print(f"  on the wire per part ({sum(result.wire.values()):.2f} in all):")
            for kind, per_part in sorted(result.wire.items(), key=lambda kv: -kv[1]):
                print(f"    {per_part:6.2f}  {kind}")
        print(
            f"  P={ports} A={agents}: {rate:.1f} parts/s of {result.limit:.1f} "
            f"({result.ratio:.3f}); agent CPU {agent_cpu / max(parts, 1) * 1e6:.0f} µs/part, "
            f"RSS {rss / 2**20:.0f} MiB ({rss / ports / 2**20:.2f} MiB/port), "
            f"sim CPU {sim_cpu / max(parts, 1) * 1e6:.0f} µs/part; turnaround "
            f"p50 {percentile(turnaround, 50) * 1e3:.1f} ms "
            f"p99 {percentile(turnaround, 99) * 1e3:.1f} ms",
            flush=True,
        )
        return result
    finally:
        for proc in procs:
            proc.stop(timeout=30)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        await sim.stop()
        nats.stop()


# What each message on the bus is, by its subject (first match wins); replies to the
# clients' inboxes and the server's own traffic are left out: only what clients publish.
WIRE_KINDS = [
    ("$KV.sms_reports.", "ledger write (sms_reports)"),
    ("$JS.API.STREAM.MSG.GET.KV_sms_reports", "ledger read (sms_reports)"),
    ("$KV.sms_messages.", "message status (sms_messages)"),
    ("$KV.sms_sending.", "claim or result record (sms_sending)"),
    ("$KV.sms_ports.", "port state (sms_ports)"),
    ("$KV.sms_agents.", "agent lease (sms_agents)"),
    ("$JS.API.STREAM.MSG.GET.", "other KV read"),
    ("$JS.API.DIRECT.GET.", "other KV read (direct)"),
    ("sms.event.result.", "result event"),
    ("sms.event.report.", "report event"),
    ("sms.event.port.", "port event"),
    ("sms.event.sending.", "journal: sending"),
    ("$JS.ACK.", "job ack / progress / nak"),
    ("$JS.API.CONSUMER.MSG.NEXT.", "pull request"),
    ("$JS.API.", "other JetStream API"),
    ("$KV.", "other KV write"),
    ("sms.send.", "job delivered (the server's, to a pull)"),
    ("sms.", "other sms subject"),
]


class WireCounter:
    """Counts, by kind, what clients publish while it listens (a `>` subscription)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.counts: dict[str, int] = {}

    @classmethod
    async def start(cls, url: str) -> WireCounter:
        counter = cls(await bus.connect(NatsConfig(url=url), name="bench-wire"))
        await counter.nc.subscribe(">", cb=counter._seen)
        await counter.nc.flush()
        return counter

    async def _seen(self, msg: Msg) -> None:
        subject = msg.subject
        if subject.startswith("_INBOX.") or subject.startswith("$JS.EVENT."):
            return
        kind = next((k for prefix, k in WIRE_KINDS if subject.startswith(prefix)), "other")
        self.counts[kind] = self.counts.get(kind, 0) + 1

    async def stop(self) -> dict[str, int]:
        await self.nc.close()
        return self.counts


TRACE: list[tuple[float, str, bytes]] = []


def _trace(sim: Simulator, port: str) -> None:
    """Debugging aid: log what one modem receives and says, with times."""
    modem, endpoint = sim.modem(port), sim.endpoint(port)
    feed, output = modem.feed, modem.output

    def traced_feed(data: bytes) -> None:
        TRACE.append((time.time(), "<-", data))
        feed(data)

    def traced_output(data: bytes) -> None:
        TRACE.append((time.time(), "->", data))
        output(data)

    endpoint._receiver = traced_feed  # type: ignore[attr-defined]
    modem.output = traced_output


def _turnaround(sent: list[SentPart], t0: float, t1: float) -> list[float]:
    """Per port, from one part's +CMGS answer to the next part's PDU: the software's share."""
    last: dict[str, float] = {}
    gaps = []
    for part in sent:
        previous = last.get(part.port)
        if previous is not None and part.pdu_time is not None and t0 <= part.time < t1:
            gaps.append(part.pdu_time - previous)
        last[part.port] = part.time
    return gaps


def report(runs: list[FarmRun], args: argparse.Namespace, load_before: str) -> None:
    rows = []
    for run in runs:
        rows.append(
            [
                run.ports,
                run.agents,
                f"{run.part_time:g}",
                f"{run.rate:.1f}",
                f"{run.limit:.0f}",
                f"**{run.ratio:.3f}** {verdict(run.ratio >= 0.97)}",
                f"{run.agent_cpu / max(run.parts, 1) * 1e6:.0f} "
                f"{verdict(run.agent_cpu / max(run.parts, 1) <= 300e-6)}",
                f"{run.agent_rss / 2**20:.0f}",
                f"{run.agent_rss / run.ports / 2**20:.2f}",
                f"{run.sim_cpu / max(run.parts, 1) * 1e6:.0f}",
                f"{percentile(run.turnaround, 50) * 1e3:.1f} / "
                f"{percentile(run.turnaround, 99) * 1e3:.1f}",
                f"{run.ready_after:.0f}",
            ]
        )
    marginal = []
    by_agents: dict[int, list[FarmRun]] = {}
    for run in runs:
        by_agents.setdefault(run.agents, []).append(run)
    for agents, group in sorted(by_agents.items()):
        group.sort(key=lambda r: r.ports)
        if len(group) >= 2:
            small, big = group[0], group[-1]
            per_port = (big.agent_rss - small.agent_rss) / (big.ports - small.ports)
            marginal.append(
                f"- {agents} agent process(es): resident memory grows by "
                f"**{per_port / 2**20:.3f} MiB per port** from {small.ports} to {big.ports} "
                f"ports (target ≤ 1 MiB: {verdict(per_port <= 2**20)}); the rest is each "
                "process's fixed Python + nats-py footprint."
            )
    routing = ", routed to the agent (+CDS, AT+CNMA)" if args.report_routing == "direct" else ""
    body = "\n".join(
        [
            f"Simulator: P ports, part time L fixed; window {args.window:g} s per size "
            f"(shortened from a minute to fit the time budget) after a warm-up of "
            f"max(3 s, 3L); jobs published straight to `sms.send.any`, "
            f"status reports {'on' if args.status_report else 'off'}{routing}. "
            "Target: delivered parts/s ≥ 0.97 × P/L; agent CPU ≤ 300 µs/part; "
            "resident memory ≤ 1 MiB per port.",
            "",
            table(
                [
                    "P",
                    "agents",
                    "L s",
                    "parts/s",
                    "P/L",
                    "ratio (≥ 0.97)",
                    "agent CPU µs/part (≤ 300)",
                    "agent RSS MiB",
                    "RSS MiB/port",
                    "sim CPU µs/part",
                    "turnaround p50 / p99 ms",
                    "ready after s",
                ],
                rows,
            ),
            "",
            *marginal,
            "",
            "Turnaround: on each port, from a part's `+CMGS` answer to the next PDU's "
            "first byte at the modem: the time the software adds per part (L is the rest).",
            "",
            "The simulator, the agents, nats-server and this driver share 2 cores; the "
            "simulator's own CPU (this process) is in the `sim CPU` column.",
            f"Load average at the start: {load_before}.",
        ]
    )
    write_section(
        "farm",
        "2. Farm saturation vs P/L, and 6. cost per part and per port",
        body,
        command=command_line(),
    )


async def amain(args: argparse.Namespace) -> None:
    load_before = note_load("farm")
    runs = []
    with workdir("farm") as directory:
        for agents in args.agents:
            for ports in args.ports:
                print(f"farm: P={ports}, {agents} agent(s), L={args.part_time}", flush=True)
                try:
                    run = await run_farm(
                        directory,
                        ports=ports,
                        agents=agents,
                        part_time=args.part_time,
                        window=args.window,
                        status_report=args.status_report,
                        ready_limit=args.ready_limit,
                        report_routing=args.report_routing,
                        wire=args.wire,
                    )
                except Exception as exc:
                    print(f"  P={ports} A={agents} failed: {exc}")
                    continue
                runs.append(run)
                report(runs, args, load_before)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--part-time", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--ready-limit", type=float, default=180.0)
    parser.add_argument(
        "--status-report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask for delivery reports (the API's default)",
    )
    parser.add_argument(
        "--report-routing",
        choices=["stored", "direct"],
        default="stored",
        help="how the ports take delivery reports (agent.ports report_routing)",
    )
    parser.add_argument(
        "--wire",
        action="store_true",
        help="count what the clients publish during the window, per part, by kind (a `>` "
        "subscription in this process: its CPU figures are not comparable with a run without)",
    )
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
