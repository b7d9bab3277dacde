"""Soak: the whole farm for 30 minutes at half its capacity, sampled every minute.

Every service runs as its command line runs it, from one config file: `nats-server`
(JetStream, file storage), `smsgate sim` (P virtual modems on ptys, part time L),
`smsgate agent` (those P ports), `smsgate api`, `smsgate callback` (the gateway-style
GET to a receiver in this process) and `smsgate history-store` (SQLite, the default).
The farm's capacity is P / L parts a second; this process sends `--load` (½) of it as
one-part messages through `GET /sendsms` with delivery reports requested, and injects
inbound SMS through the simulator's control interface at the same time.

Every minute: each process's resident memory, open fds and CPU, the size (messages,
bytes) of every stream and KV bucket, and the callbacks so far. At the end, once the
last results and reports are in: every accepted message has exactly one send result and
exactly one report at the receiver, and every inbound SMS reached it. Target: each
process's RSS grows < 5 % from minute 5 to the end of the load.

    scripts/bench soak [--minutes 30] [--ports 16] [--part-time 1.0] [--inbound-rate 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop
from nats.aio.client import Client
from smsgate import bus
from smsgate.config import Config, NatsConfig
from smsgate.embedded import nats_server_binary
from smsgate.history.database import WRITER_CACHE_KIB
from smsgate.history.schema import MESSAGES
from smsgate_api.auth import hash_password

from bench import bus_memory, history_memory
from bench.bench_farm import wait_ready
from bench.common import (
    Proc,
    Use,
    command_line,
    every,
    free_port,
    load_average,
    note_load,
    paced,
    processes,
    slope,
    smsgate_argv,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
    write_toml,
)
from bench.receiver import Receiver

USER, PASSWORD = "soak", "soakpass"
SERVICES = ("agent", "api", "callback", "history-store")
RESULT, REPORT, INBOUND = "SMS-Status-Result", "SMS-Status-Report", ""
GROWTH_TARGET = 0.05
BUS = "nats-server"


@dataclass
class Farm:
    procs: dict[str, Proc]
    api: str  # base URL
    sim: str  # the simulator's control URL
    nats_url: str
    ports: list[str]
    history: Path
    bus_monitor: str  # nats-server's monitoring and pprof base URLs
    bus_profile: str
    history_metrics: str  # the history store's /metrics


@dataclass
class Ledger:
    """What was sent and injected, and what the callback receiver got, by key."""

    accepted: set[str] = field(default_factory=set)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    injected: set[str] = field(default_factory=set)
    # (type, id or inbound text) -> how many callbacks; the status of each
    callbacks: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    statuses: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def on_callback(self, _arrived: float, target: bytes) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target.decode()).query)
        kind = query.get("type", [""])[0]
        key = query.get("message", [""])[0] if kind == INBOUND else query.get("id", [""])[0]
        self.callbacks[kind, key] += 1
        self.statuses[kind, query.get("status", [""])[0]] += 1

    def count(self, kind: str) -> int:
        return sum(n for (k, _), n in self.callbacks.items() if k == kind)

    def settled(self) -> bool:
        return all(
            self.count(kind) >= len(expected)
            for kind, expected in (
                (RESULT, self.accepted),
                (REPORT, self.accepted),
                (INBOUND, self.injected),
            )
        )

    def books(self, kind: str, expected: set[str]) -> dict[str, int]:
        """Lost (no callback), duplicated (more than one) and unknown (never sent) keys."""
        got = {key: n for (k, key), n in self.callbacks.items() if k == kind}
        return {
            "expected": len(expected),
            "received": sum(got.values()),
            "lost": len(expected - got.keys()),
            "duplicated": sum(1 for key in expected if got.get(key, 0) > 1),
            "unknown": len(got.keys() - expected),
        }


@dataclass(frozen=True)
class Minute:
    elapsed: float  # seconds since the load began
    load: str
    accepted: int
    results: int
    reports: int
    inbound: int
    use: dict[str, Use]  # process -> use
    streams: dict[str, tuple[int, int]]  # stream or bucket -> (messages, bytes)
    bus: bus_memory.BusMemory
    history_bytes: int  # the history database's pages (PRAGMA page_count)
    history: history_memory.HistoryMemory  # what the history store's memory is made of

    @property
    def kv_keys(self) -> int:
        """Keys (and delete markers) the KV buckets hold: one message each (history 1)."""
        return sum(n for name, (n, _) in self.streams.items() if name.startswith("KV_"))


def farm_config(directory: Path, args: argparse.Namespace, nats_url: str) -> dict[str, object]:
    """One file for every service, as on a single host."""
    devices = directory / "dev"
    names = [f"lte-{index}" for index in range(1, args.ports + 1)]
    nats: dict[str, object] = {"url": nats_url}
    agent: dict[str, object] = {}
    if args.retention is not None:  # what the bus keeps, and the ledger's wait inside it
        nats |= {"messages_ttl": args.retention, "events_max_age": args.retention}
        agent["report_timeout"] = args.retention / 2
    return {
        "nats": nats,
        "sim": {
            "ports": args.ports,
            "part_time": args.part_time,
            "control": f"127.0.0.1:{free_port()}",
            "device_dir": str(devices),
            "sent_log": 16,  # parts kept per modem for its control interface; not read here
        },
        "agent": agent
        | {
            "name": "soak",
            "ports": [{"name": name, "device": str(devices / name)} for name in names],
            "policy": {"min_interval": 0.0, "jitter": 0.0},  # virtual SIMs: no pacing
        },
        "api": {
            "listen": f"127.0.0.1:{free_port()}",
            "users": [{"name": USER, "password": hash_password(PASSWORD)}],
        },
        "callback": {"url": f"http://127.0.0.1:{args.receiver_port}/sms"},
        "history": {
            "url": f"sqlite:///{directory / 'history.db'}",
            "metrics_listen": f"127.0.0.1:{free_port()}",
        },
    }


async def start_farm(directory: Path, args: argparse.Namespace, procs: list[Proc]) -> Farm:
    nats_port, monitor, profile = free_port(), free_port(), free_port()
    store = directory / "nats"
    argv = [nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1"]
    # Monitoring and pprof on loopback: what the server's memory is made of, each minute.
    argv += ["-p", str(nats_port), "-m", str(monitor), "--profile", str(profile)]
    nats = spawn("nats-server", argv, directory)
    procs.append(nats)
    wait_port(nats_port)
    nats.alive()  # the port might have been someone else's
    nats_url = f"nats://127.0.0.1:{nats_port}"
    config = farm_config(directory, args, nats_url)
    path = write_toml(directory / "smsgate.toml", config)
    by_name = {"nats-server": nats}
    for name in ("sim", *SERVICES):
        by_name[name] = spawn(name, smsgate_argv(name, "-c", str(path)), directory)
        procs.append(by_name[name])
        if name == "sim":
            wait_port(int(str(config["sim"]["control"]).rsplit(":", 1)[1]), 60)  # type: ignore[index]
    api_listen = str(config["api"]["listen"])  # type: ignore[index]
    wait_port(int(api_listen.rsplit(":", 1)[1]), 60)
    return Farm(
        procs=by_name,
        api=f"http://{api_listen}",
        sim=f"http://{config['sim']['control']}",  # type: ignore[index]
        nats_url=nats_url,
        ports=[port["name"] for port in config["agent"]["ports"]],  # type: ignore[index]
        history=directory / "history.db",
        bus_monitor=f"http://127.0.0.1:{monitor}",
        bus_profile=f"http://127.0.0.1:{profile}",
        history_metrics=f"http://{config['history']['metrics_listen']}/metrics",  # type: ignore[index]
    )


async def send(client: httpx.AsyncClient, farm: Farm, ledger: Ledger, index: int) -> None:
    message_id = f"soak{index:07d}"
    params = {
        "username": USER,
        "password": PASSWORD,
        "phonenumber": f"+1555030{index % 10000:04d}",
        "message": f"soak {index}",
        "id": message_id,
        "timeout": "0",
    }
    try:
        response = await client.get(f"{farm.api}/sendsms", params=params)
    except httpx.HTTPError as exc:
        ledger.refused[type(exc).__name__] += 1
        return
    result = response.json()["report"].get("0", {}).get("result") if response.is_success else None
    if result == "sending":
        ledger.accepted.add(message_id)
    else:
        ledger.refused[f"{response.status_code} {result or response.text[:80]}"] += 1


async def inject(client: httpx.AsyncClient, farm: Farm, ledger: Ledger, index: int) -> None:
    text = f"inbound {index}"
    body = {"sender": "+15557770000", "text": text, "to_port": farm.ports[index % len(farm.ports)]}
    response = await client.post(f"{farm.sim}/inject", json=body)
    response.raise_for_status()
    ledger.injected.add(text)


async def streams(nc: Client) -> dict[str, tuple[int, int]]:
    return {
        info.config.name or "?": (info.state.messages, info.state.bytes)
        for info in await nc.jetstream().streams_info()
    }


async def soak(directory: Path, args: argparse.Namespace) -> tuple[list[Minute], Ledger, Farm]:
    ledger = Ledger()
    receiver = Receiver(ledger.on_callback)
    args.receiver_port = await receiver.start()
    minutes: list[Minute] = []
    with processes() as procs:
        farm = await start_farm(directory, args, procs)
        nc = await bus.connect(NatsConfig(url=farm.nats_url), name="bench-soak")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        try:
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                await wait_ready(nc, list(farm.procs.values()), args.ports, 180)
                start = time.monotonic()

                async def sample() -> None:
                    for proc in farm.procs.values():
                        proc.alive()
                    minute = Minute(
                        elapsed=time.monotonic() - start,
                        load=load_average(),
                        accepted=len(ledger.accepted),
                        results=ledger.count(RESULT),
                        reports=ledger.count(REPORT),
                        inbound=ledger.count(INBOUND),
                        use={name: Use.of(p.popen.pid) for name, p in farm.procs.items()},
                        streams=await streams(nc),
                        bus=await asyncio.to_thread(
                            bus_memory.read, farm.bus_monitor, farm.bus_profile
                        ),
                        history_bytes=database_size(farm.history),
                        history=await asyncio.to_thread(history_memory.read, farm.history_metrics),
                    )
                    minutes.append(minute)
                    print(line(minute), flush=True)

                stop = asyncio.Event()
                sampler = asyncio.create_task(every(60.0, stop, sample))
                seconds, rate = args.minutes * 60, args.load * args.ports / args.part_time
                await asyncio.gather(
                    paced(rate, seconds, lambda i: send(client, farm, ledger, i)),
                    paced(args.inbound_rate, seconds, lambda i: inject(client, farm, ledger, i)),
                )
                drained = time.monotonic()
                while not ledger.settled() and time.monotonic() - drained < args.drain:  # noqa: ASYNC110
                    await asyncio.sleep(1.0)
                await asyncio.sleep(5.0)  # a duplicate would come now
                stop.set()
                await sampler
                await sample()
        finally:
            await nc.close()
            await receiver.stop()
    return minutes, ledger, farm


def line(minute: Minute) -> str:
    use = "  ".join(f"{name} {u.rss / 2**20:.1f}M/{u.fds}" for name, u in minute.use.items())
    return (
        f"  {minute.elapsed / 60:5.1f} min  accepted {minute.accepted}  results "
        f"{minute.results}  reports {minute.reports}  inbound {minute.inbound}  {use}  "
        f"load {minute.load}"
    )


def database_size(database: Path) -> int:
    """Bytes of an SQLite database's pages (its write-ahead log's new pages included): all
    its page cache could ever hold."""
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        pages, size = (
            db.execute("PRAGMA page_count").fetchone()[0],
            db.execute("PRAGMA page_size").fetchone()[0],
        )
    return int(pages) * int(size)


def history_rows(path: Path) -> str:
    """The history store's messages by direction and state, e.g. `out delivered 14400`."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            f"SELECT direction, state, count(*) FROM {MESSAGES} GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    return ", ".join(f"{direction} {state} {count}" for direction, state, count in rows)


def growth(minutes: list[Minute], name: str, warmup: float) -> tuple[Use, Use, float, int]:
    """RSS at the first sample after `warmup` and at the end: (there, end, growth, peak)."""
    kept = [m for m in minutes if m.elapsed >= warmup - 1]
    there, end = kept[0].use[name], kept[-1].use[name]
    peak = max(m.use[name].rss for m in kept)
    return there, end, (end.rss - there.rss) / there.rss, peak


def beyond_page_cache(kept: list[Minute]) -> int:
    """Bytes the history store's RSS grew by beyond its SQLite page cache: what SQLite
    counts for the cache (each page with its header) and the free holes glibc's heap keeps
    between the cache's pages (a page cache that grows a page at a time leaves them where
    shorter-lived allocations were; they stop growing with it, at its ceiling)."""
    first, last = kept[0].history, kept[-1].history
    grew = kept[-1].use["history-store"].rss - kept[0].use["history-store"].rss
    return grew - (last.page_cache - first.page_cache) - max(last.heap_free - first.heap_free, 0)


def within_page_cache(kept: list[Minute]) -> bool:
    """Whether the history store grew by no more than its page cache, give or take the
    growth target: everything else it holds (statements, Python's objects, the heap in
    use besides the cache) stayed within 5 %."""
    return beyond_page_cache(kept) < GROWTH_TARGET * kept[0].use["history-store"].rss


def bus_summary(kept: list[Minute]) -> str:
    """nats-server's growth against what it stores, and what its live heap is made of."""
    first, last = kept[0], kept[-1]
    mib = 2**20
    owners = dict(last.bus.top)
    buffers, index = owners.get("block buffers", 0), owners.get("subject index", 0)
    peak = max(m.bus.rss for m in kept)
    return (
        f"RSS {first.bus.rss / mib:.1f} → {last.bus.rss / mib:.1f} MiB (peak {peak / mib:.1f}) "
        f"while the KV buckets went from {first.kv_keys:,} to {last.kv_keys:,} keys. Its live "
        f"Go heap at the end, {last.bus.live / mib:.1f} MiB, is {buffers / mib:.1f} MiB of "
        "file store block buffers (one per stream being written, up to its block size: "
        f"bounded), {index / mib:.1f} MiB of subject index "
        f"({index / max(last.kv_keys, 1):.0f} B per key; it grows with the keys kept, "
        "`nats.messages_ttl`) and the rest; the collector lets the heap grow to twice the "
        "live heap before it collects (GOGC 100) and hands freed pages back to the kernel "
        "slowly, so RSS swings between about 1.5 and 3 times the live heap. "
        "What one key costs on its own: section 9c."
    )


def bus_table(minutes: list[Minute]) -> str:
    mib = 2**20
    return table(
        [
            "min",
            "KV keys",
            "stored MiB",
            "nats-server RSS",
            "live heap",
            "next GC at",
            "idle heap",
            "GCs",
        ],
        [
            [
                f"{m.elapsed / 60:.1f}",
                f"{m.kv_keys:,}",
                f"{m.bus.store_bytes / mib:.1f}",
                f"{m.bus.rss / mib:.1f}",
                f"{m.bus.live / mib:.1f}",
                f"{m.bus.next_gc / mib:.1f}",
                f"{m.bus.heap_idle / mib:.1f}",
                m.bus.gcs,
            ]
            for m in minutes
        ],
    )


def history_table(minutes: list[Minute]) -> str:
    mib = 2**20
    return table(
        [
            "min",
            "RSS",
            "DB pages",
            "SQLite page cache",
            "SQLite other",
            "heap in use",
            "heap free",
            "RSS beyond the cache, from the first",
        ],
        [
            [
                f"{m.elapsed / 60:.1f}",
                f"{m.use['history-store'].rss / mib:.1f}",
                f"{m.history_bytes / mib:.1f}",
                f"{m.history.page_cache / mib:.1f}",
                f"{m.history.sqlite_other / mib:.2f}",
                f"{m.history.heap_in_use / mib:.1f}",
                f"{m.history.heap_free / mib:.1f}",
                f"{beyond_page_cache([minutes[0], m]) / mib:+.1f}",
            ]
            for m in minutes
        ],
    )


def owners(minute: Minute) -> str:
    return ", ".join(f"{name} {size / 2**20:.1f}" for name, size in minute.bus.top) or "?"


def report(
    minutes: list[Minute], ledger: Ledger, farm: Farm, args: argparse.Namespace, before: str
) -> str:
    # The minute marks up to the end of the load; the last sample is after the drain.
    during = [m for m in minutes[:-1] if m.elapsed < args.minutes * 60 + 30]
    drained = minutes[-1]
    names = list(drained.use)
    mib = 2**20
    per_minute = table(
        ["min", "accepted", "results", "reports", "inbound", *names, "load average"],
        [
            [
                f"{m.elapsed / 60:.1f}",
                m.accepted,
                m.results,
                m.reports,
                m.inbound,
                *(f"{m.use[n].rss / mib:.1f} / {m.use[n].fds}" for n in names),
                m.load,
            ]
            for m in minutes
        ],
    )
    stream_names = sorted(drained.streams)
    stream_table = table(
        ["min", *stream_names],
        [
            [
                f"{m.elapsed / 60:.1f}",
                *(
                    f"{m.streams.get(s, (0, 0))[0]:,} / {m.streams.get(s, (0, 0))[1] / 1024:,.0f}"
                    for s in stream_names
                ),
            ]
            for m in minutes
        ],
    )
    rows, met = [], True
    warmup = args.warmup * 60
    kept = [m for m in during if m.elapsed >= warmup - 1]
    for name in names:
        there, end, grew, peak = growth(during, name, warmup)
        ok = grew < GROWTH_TARGET
        note = verdict(ok)
        if name == "history-store" and not ok:
            ok = within_page_cache(kept)
            note = "met: its page cache" if ok else verdict(ok)
        if name != BUS:
            met &= ok
        cpu = end.cpu - during[0].use[name].cpu
        rows.append(
            [
                name,
                f"{there.rss / mib:.1f}",
                f"{end.rss / mib:.1f}",
                f"{peak / mib:.1f}",
                f"{grew * 100:+.1f} % {note}",
                f"{there.fds} → {end.fds}",
                f"{cpu:.0f}",
            ]
        )
    agent_slope = slope([float(m.results) for m in kept], [m.use["agent"].rss / 1024 for m in kept])
    memory = table(
        [
            "process",
            f"RSS MiB at {args.warmup:g} min",
            "at the end of the load",
            "peak",
            "growth (< 5 %)",
            "open fds",
            "CPU s in all",
        ],
        rows,
    )
    books = [
        ("send results", ledger.books(RESULT, ledger.accepted)),
        ("delivery reports", ledger.books(REPORT, ledger.accepted)),
        ("inbound SMS", ledger.books(INBOUND, ledger.injected)),
    ]
    whole = all(b["lost"] == b["duplicated"] == b["unknown"] == 0 for _, b in books)
    book_table = table(
        ["at the receiver", "expected", "callbacks", "lost", "duplicated", "unknown"],
        [
            [what, b["expected"], b["received"], b["lost"], b["duplicated"], b["unknown"]]
            for what, b in books
        ],
    )
    statuses = ", ".join(
        f"{kind or 'inbound'} {status or '(none)'} {n}"
        for (kind, status), n in sorted(ledger.statuses.items())
    )
    refused = ", ".join(f"{why}: {n}" for why, n in ledger.refused.items()) or "none"
    capacity = args.ports / args.part_time
    return "\n".join(
        [
            f"{args.ports} virtual modems (pty), part time {args.part_time:g} s: capacity "
            f"{capacity:g} parts/s. Load: {args.load:g} of it, {args.load * capacity:g} one-part "
            f"messages/s through `GET /sendsms` (timeout=0, delivery reports on) for "
            f"{args.minutes:g} min, and {args.inbound_rate:g} inbound SMS/s injected on the "
            "modems (round robin). Processes: nats-server (`-js`, file store), `smsgate sim`, "
            "`smsgate agent`, `smsgate api`, `smsgate callback` (gateway GET to a receiver in "
            "the bench process), `smsgate history-store` (SQLite), all from one config file. "
            f"Load average before {before}.",
            "",
            f"**Memory of smsgate's processes: {verdict(met)}** (each one's RSS from minute "
            f"{args.warmup:g} to the end of the load, target < 5 %; the history store's "
            "SQLite page cache, up to its ceiling of "
            f"{WRITER_CACHE_KIB // 1024} MiB, and the heap's free space between its pages are "
            "not counted: the table of the history store below). "
            f"**Nothing lost: {verdict(whole)}**. "
            f"**The bus (nats-server)**: {bus_summary(kept)}",
            "",
            memory,
            "",
            f"Agent RSS against results after minute {args.warmup:g}: "
            f"{agent_slope * 1000:+.2f} KiB per 1,000 messages (issue 19 measured +600 "
            "before the report ledger).",
            "",
            book_table,
            "",
            f"Callbacks by status: {statuses}. Requests refused: {refused}. History store: "
            f"{history_rows(farm.history)}.",
            "",
            "Per minute: RSS MiB / open fds of each process, callbacks so far (the last row "
            f"after the drain, {drained.elapsed / 60 - args.minutes:.1f} min after the load):",
            "",
            per_minute,
            "",
            "Per minute: messages / KiB in each stream and KV bucket (`KV_` = bucket):",
            "",
            stream_table,
            "",
            "Per minute: what nats-server's memory is made of (bench/bus_memory.py: `/varz`, "
            "`/jsz` and the Go runtime's MemStats right after a collection):",
            "",
            bus_table(minutes),
            "",
            f"nats-server's largest live heap owners at the end (MiB): {owners(drained)}.",
            "",
            "Per minute: the history store's RSS (MiB) against its database on disk, and what "
            "its memory is made of, read from its own metrics (bench/history_memory.py): "
            "SQLite's page cache and the rest of SQLite's heap as SQLite counts them, glibc's "
            "heap in use and free; the last column is its RSS growth beyond the cache's and "
            "the heap's free space's, which the target counts:",
            "",
            history_table(minutes),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="of load")
    parser.add_argument("--ports", type=int, default=16)
    parser.add_argument("--part-time", type=float, default=1.0, help="seconds per part (L)")
    parser.add_argument("--load", type=float, default=0.5, help="share of P/L sent")
    parser.add_argument("--inbound-rate", type=float, default=1.0, help="inbound SMS/s")
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes before growth counts")
    parser.add_argument(
        "--retention",
        type=float,
        help="seconds the bus keeps statuses and events (nats.messages_ttl and "
        "events_max_age; default 1 hour and 7 days): shorter than the run shows whether "
        "nats-server levels off once it drops as much as it takes in; longer than the "
        "settled window (Config.settled_ttl, 1155 s by default)",
    )
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait at the end")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args(argv)
    if args.minutes < args.warmup + 1:  # samples are a minute apart
        parser.error("--minutes must be at least --warmup + 1")
    settled = Config().settled_ttl
    if args.retention is not None and args.retention <= settled:
        parser.error(f"--retention must be longer than the settled window ({settled:g} s)")
    section = "soak" if args.retention is None else "soak-retention"
    before = note_load(section)
    with workdir("soak") as directory:
        minutes, ledger, farm = uvloop.run(soak(directory, args))
        body = report(minutes, ledger, farm, args, before)
    print(body)
    if args.no_write:
        return
    title = "9. Soak: the whole farm at half its capacity"
    if args.retention is not None:
        title = f"9b. Soak with the bus keeping {args.retention:g} s, not 7 days"
    write_section(section, title, body, command=command_line())


if __name__ == "__main__":
    main()
