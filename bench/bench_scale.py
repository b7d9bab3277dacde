"""A farm at scale: a 3-node NATS cluster (replicas = 3), many TCP modems, many agents.

Everything runs as its command line runs it: three `nats-server` nodes clustered on
loopback, `smsgate sim` processes serving virtual modems over TCP (`socket://`), and
`smsgate agent` processes, each with its share of the ports. Jobs go straight into
`sms.send.any` (the API is benchmark 1), delivery reports off. The part time L is
chosen large enough that the machine (2 cores, shared) is not the limit: the farm's
limit is P/L parts/s, and farm efficiency is delivered parts/s against it, counted from
the result events over a window once every port is busy.

Also measured: each nats-server node's CPU (user + system from /proc) and resident
memory, idle (every port ready, no jobs) and under load; the consumers on the cluster
and the Raft groups they make (with replicas > 1 every stream and every consumer is one,
plus the meta group); the start-up of one more agent with `--startup-ports` ports
(to its "serving" line and to every port up: ready, or busy with a job); and how long
a job pinned to a port (`port=`, subject `sms.send.port.<name>`) waits for that idle
port before it is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError
from smsgate import bus, contracts, subjects
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedCluster, EmbeddedNats

from bench.bench_farm import publish_jobs
from bench.common import (
    Proc,
    command_line,
    cpu_seconds,
    load_average,
    median,
    note_load,
    percentile,
    rss_bytes,
    smsgate_argv,
    spawn,
    table,
    verdict,
    workdir,
    write_section,
    write_toml,
)

SERVING = re.compile(rb"agent \S+ serving (\d+) ports")


@dataclass
class NodeUse:
    cpu: list[float]  # share of one core, per node
    rss: list[int]  # bytes, per node


def start_sims(
    directory: Path, nats_url: str, ports: int, sims: int, part_time: float, tag: str
) -> tuple[list[Proc], dict[str, str]]:
    """`sims` simulator processes sharing `ports` TCP modems; the farm's {port: device}."""
    procs, maps = [], []
    for index in range(sims):
        count = ports // sims + (1 if index < ports % sims else 0)
        map_file = directory / f"devices-{tag}{index + 1}.json"
        config = {
            "nats": {"url": nats_url},
            "sim": {
                "ports": count,
                "prefix": f"{tag}{index + 1}-",
                "transport": "tcp",
                "part_time": part_time,
                "control": "",
                "map_file": str(map_file),
                "msisdn_base": f"+1555{index + 1:02d}",
            },
        }
        path = write_toml(directory / f"sim-{tag}{index + 1}.toml", config)
        procs.append(
            spawn(f"sim-{tag}{index + 1}", smsgate_argv("sim", "-c", str(path)), directory)
        )
        maps.append(map_file)
    devices: dict[str, str] = {}
    deadline = time.monotonic() + 120
    for proc, map_file in zip(procs, maps, strict=True):
        while not map_file.exists() or not map_file.read_text().strip():
            proc.alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} wrote no device map")
            time.sleep(0.2)
        devices.update(msgspec.json.decode(map_file.read_bytes()))
    return procs, devices


def start_agent(
    directory: Path,
    nats: NatsConfig,
    name: str,
    devices: dict[str, str],
    numbers: dict[str, int],
    args: argparse.Namespace,
) -> Proc:
    config: dict[str, object] = {
        "nats": {"url": nats.url, "replicas": nats.replicas},
        "agent": {
            "name": name,
            "heartbeat": args.heartbeat,
            # A part takes L here: the wait for +CMGS (60 s by default) must outlast it.
            "send_timeout": args.part_time + 60.0,
            "ports": [
                {"name": port, "device": device, "number": numbers[port]}
                for port, device in sorted(devices.items())
            ],
            "policy": {"min_interval": 0.0, "jitter": 0.0},  # virtual SIMs: no pacing
        },
    }
    path = write_toml(directory / f"{name}.toml", config)
    # Compiled once, as an installed package is: not every agent's start (a shell with
    # PYTHONDONTWRITEBYTECODE set compiled every module at each start, 0.25 s of CPU).
    env = {"PYTHONDONTWRITEBYTECODE": ""}
    return spawn(name, smsgate_argv("agent", "-c", str(path)), directory, env=env)


async def serving_after(proc: Proc, started: float, limit: float) -> float:
    """Seconds from `started` until the agent logs that it serves its ports."""
    while time.monotonic() - started < limit:
        proc.alive()
        if SERVING.search(proc.log.read_bytes()):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{proc.name} not serving after {limit}s:\n{proc.tail()}")


UP = frozenset({contracts.PortStatus.READY, contracts.PortStatus.BUSY})


async def ready_ports(nc: Client) -> set[str]:
    """Names of the ports the sms_ports KV shows up: ready, or busy with a job already
    (a port that starts while jobs wait takes one at once); one watch over every key."""
    kv = await nc.jetstream().key_value(subjects.PORTS_BUCKET)
    ready: set[str] = set()
    watcher = await kv.watchall()
    async for entry in watcher:
        if entry is None:
            break
        with contextlib.suppress(msgspec.MsgspecError):
            state = contracts.decode(entry.value or b"", contracts.PortState)
            if state.status in UP:
                ready.add(entry.key)
    await watcher.stop()  # type: ignore[no-untyped-call]
    return ready


async def wait_ready(nc: Client, names: set[str], procs: list[Proc], limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        for proc in procs:
            proc.alive()
        if names <= await ready_ports(nc):
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise TimeoutError(f"not every port ready after {limit}s")


def node_use(nodes: list[EmbeddedNats], seconds: float) -> NodeUse:
    pids = [node.pid for node in nodes]
    assert all(pid is not None for pid in pids)
    before = [cpu_seconds(pid) for pid in pids if pid is not None]
    time.sleep(seconds)
    after = [cpu_seconds(pid) for pid in pids if pid is not None]
    return NodeUse(
        cpu=[(b - a) / seconds for a, b in zip(before, after, strict=True)],
        rss=[rss_bytes(pid) for pid in pids if pid is not None],
    )


async def consumers_and_groups(nc: Client) -> tuple[int, int, int, int]:
    """(streams, consumers, Raft groups, consumers on SMS_SEND): with replicas > 1 each
    stream and consumer is one (ephemeral ones too: KV watches, key listings)."""
    js = nc.jetstream()
    streams = await js.streams_info()
    consumers = sum(s.state.consumer_count for s in streams)
    send = (await js.stream_info(subjects.SEND_STREAM)).state.consumer_count
    return len(streams), consumers, 1 + len(streams) + consumers, send


async def kv_writes(nc: Client) -> tuple[int, int]:
    """Messages stored so far in the port states' and the agents' leases' KV streams."""
    js = nc.jetstream()
    ports = await js.stream_info(f"KV_{subjects.PORTS_BUCKET}")
    agents = await js.stream_info(f"KV_{subjects.AGENTS_BUCKET}")
    return ports.state.last_seq, agents.state.last_seq


MODEM_UP = re.compile(rb"^(\S+ \S+) INFO +smsgate\.modem: \S+: up: ", re.MULTILINE)


def _log_time(stamp: bytes) -> float:
    return dt.datetime.strptime(stamp.decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def bring_up(log: bytes) -> float | None:
    """From an agent's log: seconds from 'serving' to its last modem initialised (the AT
    bring-up of every port, after the bus is set up)."""
    serving, ups = SERVING.search(log), MODEM_UP.findall(log)
    if serving is None or not ups:
        return None
    line = log.rfind(b"\n", 0, serving.start()) + 1
    return _log_time(ups[-1]) - _log_time(log[line : line + 23])


async def pinned_waits(nc: Client, ports: list[str], part_time: float, count: int) -> list[float]:
    """Publish one job pinned to each of `count` idle ports; result time minus L, each."""
    if count == 0:
        return []
    js = nc.jetstream()
    published: dict[str, float] = {}
    waits: list[float] = []
    done = asyncio.Event()

    async def on_result(msg: Msg) -> None:
        with contextlib.suppress(msgspec.MsgspecError):
            result = contracts.decode(msg.data, contracts.SendResult)
            if result.id in published:
                waits.append(time.monotonic() - published.pop(result.id) - part_time)
                if not published:
                    done.set()

    sub = await nc.subscribe(subjects.event_filter("result"), cb=on_result)
    try:
        for port in random.sample(ports, count):
            job = contracts.SendJob(
                id=os.urandom(16).hex(),
                to="+15550209999",
                text="pinned",
                port=port,
                status_report=False,
                created=contracts.utcnow(),
            )
            published[job.id] = time.monotonic()
            await js.publish(
                subjects.send_port(port), contracts.encode(job), headers={"Nats-Msg-Id": job.id}
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60 + 2 * part_time):
                await done.wait()
    finally:
        await sub.unsubscribe()
    return waits


async def run_scale(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = EmbeddedCluster(base_dir=directory / "nats")
    cluster.start()
    nats = NatsConfig(url=cluster.url, replicas=args.replicas)
    procs: list[Proc] = []
    nc: Client | None = None
    figures: dict[str, Any] = {}
    try:
        nc = await bus.connect(nats, name="bench-scale")
        for _ in range(300):  # the meta leader takes a moment to be elected
            try:
                await bus.provision(nc.jetstream(), nats)
                break
            except (APIError, NatsTimeoutError, NoRespondersError):
                await asyncio.sleep(0.2)
        figures["idle_empty"] = node_use(cluster.nodes, 5)
        sims, devices = start_sims(directory, nats.url, args.ports, args.sims, args.part_time, "s")
        procs += sims
        names = sorted(devices)
        numbers = {name: index + 1 for index, name in enumerate(names)}
        started = time.monotonic()
        agents = [
            start_agent(
                directory,
                nats,
                f"agent-{i + 1}",
                {n: devices[n] for n in names[i :: args.agents]},
                numbers,
                args,
            )
            for i in range(args.agents)
        ]
        procs += agents
        serving = [await serving_after(a, started, args.ready_limit) for a in agents]
        ready = await wait_ready(nc, set(names), procs, args.ready_limit)
        figures["farm_serving"] = (min(serving), max(serving))
        figures["farm_ready"] = ready
        print(f"farm: {args.ports} ports on {args.agents} agents ready after {ready:.1f}s")
        await asyncio.sleep(5)
        writes0, agent_cpu0 = await kv_writes(nc), sum(cpu_seconds(a.popen.pid) for a in agents)
        figures["idle"] = node_use(cluster.nodes, args.idle_seconds)
        writes1 = await kv_writes(nc)
        figures["idle_agents_cpu"] = (
            sum(cpu_seconds(a.popen.pid) for a in agents) - agent_cpu0
        ) / args.idle_seconds
        figures["idle_writes"] = [
            (b - a) / args.idle_seconds for a, b in zip(writes0, writes1, strict=True)
        ]
        figures["groups"] = await consumers_and_groups(nc)
        print(f"idle: {_use(figures['idle'])}; streams/consumers/groups {figures['groups']}")
        if args.idle_only:
            return figures
        waits = await pinned_waits(nc, names, args.part_time, args.pinned)
        figures["pinned"] = waits
        print(f"pinned: {len(waits)} of {args.pinned} sent; waits {sorted(waits)}")

        # Load: enough jobs for warm-up + window + a margin, so no port runs dry.
        warmup = 2 * args.part_time
        limit = args.ports / args.part_time
        jobs = int(limit * (warmup + args.window + args.part_time))
        results: list[float] = []
        failed: list[str] = []

        async def on_result(msg: Msg) -> None:
            # Only a part sent is delivered: a send that timed out is a result too.
            with contextlib.suppress(msgspec.MsgspecError):
                result = contracts.decode(msg.data, contracts.SendResult)
                if result.status is contracts.SendStatus.SENT:
                    results.append(time.monotonic())
                else:
                    failed.append(result.reason or "")

        sub = await nc.subscribe(subjects.event_filter("result"), cb=on_result)
        t_publish = time.monotonic()
        await publish_jobs(nc, jobs, status_report=False)
        print(f"published {jobs} jobs in {time.monotonic() - t_publish:.1f}s")
        await asyncio.sleep(max(0.0, t_publish + warmup - time.monotonic()))
        t0 = time.monotonic()
        agent_cpu0 = sum(cpu_seconds(a.popen.pid) for a in agents)
        figures["load"] = await asyncio.to_thread(node_use, cluster.nodes, args.window)
        t1 = time.monotonic()
        agent_cpu = sum(cpu_seconds(a.popen.pid) for a in agents) - agent_cpu0
        await sub.unsubscribe()
        delivered = sum(1 for moment in results if t0 <= moment < t1)
        rate = delivered / (t1 - t0)
        figures["rate"], figures["limit"] = rate, limit
        figures["failed"] = len(failed)
        figures["agent_cpu_per_part"] = agent_cpu / max(delivered, 1)
        print(
            f"load: {rate:.1f} parts/s of {limit:.1f} ({rate / limit:.3f}); {_use(figures['load'])}"
        )

        # One more agent, as an operator adds a host: its start-up at this farm's size.
        if args.startup_ports:
            extra_sims, extra = start_sims(
                directory, nats.url, args.startup_ports, 1, args.part_time, "x"
            )
            procs += extra_sims
            base = len(numbers)
            extra_numbers = {n: base + i + 1 for i, n in enumerate(sorted(extra))}
            started = time.monotonic()
            newcomer = start_agent(directory, nats, "agent-new", extra, extra_numbers, args)
            procs.append(newcomer)
            figures["startup_serving"] = await serving_after(newcomer, started, args.ready_limit)
            await wait_ready(nc, set(extra), [newcomer], args.ready_limit)
            figures["startup_ready"] = time.monotonic() - started
            figures["startup_phases"] = bring_up(newcomer.log.read_bytes())
            print(
                f"startup: {figures['startup_serving']:.1f}s serving, "
                f"{figures['startup_ready']:.1f}s ready"
            )
        return figures
    finally:
        # Signal every process first: agents drain their parts in flight (up to L) at once.
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in reversed(procs):
            proc.stop(timeout=30)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        cluster.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--sims", type=int, default=4, help="simulator processes")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument(
        "--part-time",
        type=float,
        default=200.0,
        help="L, seconds per part (P/L parts/s must be far below what the machine does)",
    )
    parser.add_argument("--window", type=float, default=None, help="default: L")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--pinned", type=int, default=10, help="pinned jobs to time")
    parser.add_argument("--startup-ports", type=int, default=500)
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        help="agent.heartbeat: every port's state is rewritten in the KV this often",
    )
    parser.add_argument("--ready-limit", type=float, default=900.0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--idle-only", action="store_true", help="the farm idle only: no load, nothing written"
    )
    args = parser.parse_args(argv)
    args.window = args.window or args.part_time
    if args.window % args.part_time:
        # Every part takes exactly L and the ports start together: they finish in waves,
        # and a window of a fraction of L counts a wave's burst (2.000 at L/2).
        parser.error("--window must be a whole number of --part-time")
    load_before = note_load("scale")
    with workdir("scale") as directory:
        figures = asyncio.run(run_scale(directory, args))
    if args.idle_only:
        print(f"load average before {load_before}, after {load_average()}")
        return figures
    body = report(figures, args, load_before)
    print(body)
    if not args.no_write:
        write_section(
            "scale", "8. A farm at scale on a 3-node cluster", body, command=command_line()
        )
    return figures


def _use(use: object) -> str:
    assert isinstance(use, NodeUse)
    cpu = " / ".join(f"{c * 100:.1f} %" for c in use.cpu)
    rss = " / ".join(f"{r / 2**20:.0f}" for r in use.rss)
    return f"CPU {cpu} of a core; RSS {rss} MiB"


def report(figures: dict[str, Any], args: argparse.Namespace, load_before: str) -> str:
    rate, limit = float(figures["rate"]), float(figures["limit"])
    idle = figures["idle"]
    assert isinstance(idle, NodeUse)
    streams, consumers, groups, send_consumers = figures["groups"]
    waits: list[float] = figures["pinned"]
    serving_min, serving_max = figures["farm_serving"]
    rows: list[list[object]] = [
        [
            "farm efficiency (delivered parts/s vs P/L)",
            f"{rate:.2f} / {limit:.2f} = {rate / limit:.3f}",
            f"≥ 0.97: {verdict(rate / limit >= 0.97)}",
        ],
        ["nats-server per node, idle, no ports yet", _use(figures["idle_empty"]), ""],
        [
            "nats-server per node, idle, every port ready",
            _use(idle),
            f"≤ 5 % per node: {verdict(max(idle.cpu) <= 0.05)}",
        ],
        ["nats-server per node, under load", _use(figures["load"]), ""],
        ["streams / consumers / Raft groups", f"{streams} / {consumers} / {groups}", ""],
        ["consumers on SMS_SEND (`send-any` and the agents')", str(send_consumers), ""],
        [
            f"KV writes idle at replicas = {args.replicas}: port states / agents' leases "
            f"(agent.heartbeat {args.heartbeat:g} s)",
            " / ".join(f"{w:.1f} /s" for w in figures["idle_writes"]),
            "",
        ],
        [
            f"the {args.agents} agents' CPU, idle, in all",
            f"{float(figures['idle_agents_cpu']) * 100:.1f} % of a core",
            "",
        ],
        [
            "agents start to 'serving', whole farm at once",
            f"{serving_min:.1f}–{serving_max:.1f} s",
            "",
        ],
        [
            "every port ready, after the last agent serves",
            f"{float(figures['farm_ready']):.1f} s",
            "",
        ],
        [
            "agent CPU per part under load",
            f"{float(figures['agent_cpu_per_part']) * 1e6:.0f} µs",
            "",
        ],
        [
            f"pinned job's wait for its idle port (result − L), {len(waits)} of {args.pinned}",
            f"median {median(waits) * 1e3:.0f} ms, "
            f"max {max(waits, default=float('nan')) * 1e3:.0f} ms",
            "",
        ],
    ]
    if "startup_serving" in figures:
        serving, ready = float(figures["startup_serving"]), float(figures["startup_ready"])
        rows.append(
            [
                f"one more agent with {args.startup_ports} ports: 'serving' / every port up",
                f"{serving:.1f} s / {ready:.1f} s",
                f"≤ 10 s: {verdict(ready <= 10)}",
            ]
        )
        phases = figures["startup_phases"]
        if phases is not None:
            rows.append(
                ["… from 'serving' to its last modem initialised (its log)", f"{phases:.1f} s", ""]
            )
    rows.append(["results not `sent` during the load (any reason)", str(figures["failed"]), ""])
    return "\n".join(
        [
            f"P = {args.ports} TCP modems in {args.sims} `smsgate sim` processes, {args.agents} "
            f"`smsgate agent` processes, a 3-node nats-server cluster on loopback, replicas = "
            f"{args.replicas}; L = {args.part_time:g} s per part "
            f"(P/L = {limit:.1f} parts/s, chosen so the shared 2-core machine is not the "
            f"limit); window {args.window:g} s after a "
            f"{2 * args.part_time:g} s warm-up; jobs on `sms.send.any`, delivery reports off.",
            "",
            table(["what", "measured", "target"], rows),
            "",
            f"p99 of pinned waits: {percentile(waits, 99) * 1e3:.0f} ms. Load average before "
            f"{load_before}, after {load_average()} (about six other engineers' jobs share this "
            "machine).",
        ]
    )


if __name__ == "__main__":
    main()
