"""Benchmark 7: the message history at scale, on SQLite and on PostgreSQL.

For each backend: N messages go into a fresh store through the history store's own
folding code (`ingest.apply_batch`, batches of `[history] batch` events per transaction, each
event decoded from its wire JSON): a queued record, a send result with its TP-MR, and a
delivery report for each sent message; one in ten is an inbound SMS instead. Their times
are spread over the last 30 days, their numbers over N/10 parties. That gives the fold
rate (events/s) and a store of N messages. Then the API is started as its own process on
that store and asked over HTTP, one request at a time:

- a search by number (`?number=`, a page of 50), as an admin and as a user: p50 / p99;
- the newest page of the last hour (`?since=`): p50 / p99;
- an export of everything (`?format=csv`): rows/s, and the API process's peak resident
  memory above what it held before the export.

Separately, on a real nats-server: `--stream` events published to SMS_EVENTS, then the
history store service started on a fresh store and timed until it has folded them all
(the end-to-end ingest rate, from the stream's durable consumer to committed rows).

Targets (issue 19): number search p99 < 50 ms; export memory growth < 100 MiB; ingest
at least 5x the farm benchmark's peak event rate (about 1000 parts/s at 1024 ports, each
part bringing a queued record, a sending record, a result and a report: 4000 events/s,
so 20,000 events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import psycopg
import tomli_w
import uvloop
from smsgate import bus, contracts, subjects
from smsgate.config import Config, HistoryConfig, NatsConfig
from smsgate.contracts import (
    DeliveryReport,
    DeliveryState,
    InboundSms,
    MessageQueued,
    PartResult,
    SendResult,
    SendStatus,
)
from smsgate.embedded import EmbeddedNats, EmbeddedPostgres
from smsgate.history import schema
from smsgate.history.database import Database, Session
from smsgate_api.auth import hash_password
from smsgate_history import ingest
from smsgate_history.service import HistoryStore

from bench.bench_api import SERVE_API
from bench.common import (
    PYTHON,
    command_line,
    free_port,
    note_load,
    percentile,
    processes,
    rss_bytes,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
)

ADMIN, USER, PASSWORD = "bench-admin", "user-7", "benchpass"
USERS = 20
PORTS = 64
DAYS = 30
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TARGET_EVENTS_PER_S = 20_000


def events(count: int, seed: int = 7) -> Iterator[bytes]:
    """The wire JSON of `count` messages' events, oldest message first."""
    rng = random.Random(seed)
    span = DAYS * 86400
    numbers = max(count // 10, 1)
    for i in range(count):
        when = NOW - dt.timedelta(seconds=span * (count - i) / count)
        mid = f"m{i:08d}"
        number = f"+1555{rng.randrange(numbers):07d}"
        port = f"lte-{rng.randrange(1, PORTS + 1)}"
        if i % 10 == 9:
            yield contracts.encode(
                InboundSms(
                    event_id=f"{mid}:in",
                    port=port,
                    time=when,
                    id=mid,
                    sender=number,
                    text=f"reply {i} to offer {rng.randrange(1000)}",
                    smsc_time=when,
                )
            )
            continue
        user = f"user-{rng.randrange(USERS)}"
        yield contracts.encode(
            MessageQueued(
                event_id=f"{mid}:queued",
                id=mid,
                to=number,
                user=user,
                text=f"Your code is {rng.randrange(10**6):06d}, order {i}",
                time=when,
            )
        )
        failed = rng.random() < 0.03
        yield contracts.encode(
            SendResult(
                event_id=f"{mid}:result",
                port=port,
                imsi="460004372167365",
                time=when + dt.timedelta(seconds=2),
                id=mid,
                to=number,
                user=user,
                status=SendStatus.FAILED if failed else SendStatus.SENT,
                reason="+CMS ERROR: 38" if failed else None,
                parts=[] if failed else [PartResult(sequence=1, reference=i % 256)],
            )
        )
        if not failed:
            yield contracts.encode(
                DeliveryReport(
                    event_id=f"{mid}:report",
                    port=port,
                    id=mid,
                    to=number,
                    user=user,
                    time=when + dt.timedelta(seconds=9),
                    state=DeliveryState.DELIVERED,
                )
            )


def batches(count: int, size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for data in events(count):
        batch.append(data)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def fill(url: str, count: int, batch: int) -> tuple[int, float]:
    """Fold `count` messages' events into a fresh store; (events, seconds)."""
    db = Database(url)
    await db.run(schema.create)
    folded = 0
    started = time.perf_counter()
    last = started
    for chunk in batches(count, batch):

        def work(session: Session, chunk: list[bytes] = chunk) -> None:
            ingest.apply_batch(session, [ingest.decode(data) for data in chunk])

        await db.run(work)
        folded += len(chunk)
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            print(f"  {folded} events, {folded / (last - started):.0f}/s", flush=True)
    elapsed = time.perf_counter() - started
    await db.close()
    return folded, elapsed


def sampled_peak(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_bytes(pid))
        time.sleep(0.02)


def latencies(client: httpx.Client, paths: list[str]) -> list[float]:
    found = []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        found.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return found


@dataclass
class ApiFigures:
    number: list[float]  # ms per request
    number_user: list[float]
    last_hour: list[float]
    export_rows: int
    export_s: float
    export_growth_mib: float


def measure_api(url: str, count: int, queries: int, work: Path) -> ApiFigures:
    """Start the API on the store and time searches and an export over HTTP."""
    port = free_port()
    config = {
        "nats": {"url": "nats://127.0.0.1:1"},  # none: the history needs no NATS
        "api": {
            "listen": f"127.0.0.1:{port}",
            "access_log": False,
            "users": [
                {"name": ADMIN, "password": hash_password(PASSWORD), "admin": True},
                {"name": USER, "password": hash_password(PASSWORD)},
            ],
        },
        "history": {"url": url},
    }
    path = work / "api.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    rng = random.Random(11)
    numbers = [f"+1555{rng.randrange(max(count // 10, 1)):07d}" for _ in range(queries)]
    since = (NOW - dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    with processes() as started:
        api = spawn("api", [PYTHON, "-c", SERVE_API, str(path)], work)
        started.append(api)
        wait_port(port, 60)
        base = f"http://127.0.0.1:{port}"
        with (
            httpx.Client(base_url=base, auth=(ADMIN, PASSWORD), timeout=600) as admin,
            httpx.Client(base_url=base, auth=(USER, PASSWORD), timeout=600) as user,
        ):
            # Warm: connections, the schema check, and each user's one scrypt check.
            admin.get("/api/v1/messages?limit=1").raise_for_status()
            user.get("/api/v1/messages?limit=1").raise_for_status()
            by_number = latencies(admin, [f"/api/v1/messages?number={n}" for n in numbers])
            as_user = latencies(user, [f"/api/v1/messages?number={n}" for n in numbers])
            last_hour = latencies(admin, [f"/api/v1/messages?since={since}"] * queries)
            baseline = rss_bytes(api.popen.pid)
            peak = [baseline]
            stop = threading.Event()
            sampler = threading.Thread(target=sampled_peak, args=(api.popen.pid, stop, peak))
            sampler.start()
            rows = -1  # the header
            started_export = time.perf_counter()
            with admin.stream("GET", "/api/v1/messages?format=csv") as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    rows += 1 if line else 0
            export_s = time.perf_counter() - started_export
            stop.set()
            sampler.join()
    return ApiFigures(
        number=by_number,
        number_user=as_user,
        last_hour=last_hour,
        export_rows=rows,
        export_s=export_s,
        export_growth_mib=(peak[0] - baseline) / 2**20,
    )


async def stream_ingest(url: str, count: int, batch: int, work: Path) -> tuple[int, float]:
    """Publish `count` messages' events to SMS_EVENTS, then time the store folding them."""
    nats = EmbeddedNats(store_dir=work / "nats")
    await nats.astart()
    try:
        config = Config(nats=NatsConfig(url=nats.url), history=HistoryConfig(url=url, batch=batch))
        nc = await bus.connect(config.nats)
        js = nc.jetstream()
        await bus.provision(js, config.nats)
        published = 0
        pending = []
        for data in events(count, seed=13):
            kind = msgspec.json.decode(data)["type"]
            subject = subjects.queued(None) if kind == "queued" else subjects.event(kind, "lte-1")
            pending.append(js.publish(subject, data))
            if len(pending) == 200:
                await asyncio.gather(*pending)
                published += len(pending)
                pending = []
        await asyncio.gather(*pending)
        published += len(pending)
        store = HistoryStore(config)
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(store.run(nc, stop))
        while store.applied < published and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        await store.close()
        await nc.close()
        return published, elapsed
    finally:
        await nats.astop()


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}"


async def amain(args: argparse.Namespace) -> None:
    note_load("history")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rows: list[list[object]] = []
    notes: list[str] = []
    for backend in backends:
        with workdir(f"history-{backend}") as work:
            pg_dir = Path(tempfile.mkdtemp(prefix="smsgate-bench-pg-"))
            postgres = EmbeddedPostgres(pg_dir)
            try:
                if backend == "postgresql":
                    await asyncio.to_thread(postgres.start)
                    url = postgres.url
                else:
                    url = f"sqlite:///{work / 'history.db'}"
                print(f"[{backend}] folding {args.messages} messages", flush=True)
                folded, seconds = await fill(url, args.messages, args.batch)
                fold_rate = folded / seconds
                print(f"[{backend}] {folded} events in {seconds:.1f} s: {fold_rate:.0f}/s")
                found = await asyncio.to_thread(measure_api, url, args.messages, args.queries, work)
                if backend == "postgresql":
                    stream_url = postgres.url.rsplit("/", 1)[0] + "/stream"
                    with psycopg.connect(postgres.url, autocommit=True) as conn:
                        conn.execute("CREATE DATABASE stream")
                else:
                    stream_url = f"sqlite:///{work / 'stream.db'}"
                published, stream_s = await stream_ingest(stream_url, args.stream, args.batch, work)
                stream_rate = published / stream_s
            finally:
                await asyncio.to_thread(postgres.stop)
                shutil.rmtree(pg_dir, ignore_errors=True)
        number, user, hour = found.number, found.number_user, found.last_hour
        export_rate = found.export_rows / found.export_s
        growth = found.export_growth_mib
        rows.append(
            [
                backend,
                args.messages,
                f"{fold_rate:,.0f}",
                f"{stream_rate:,.0f} {verdict(stream_rate >= TARGET_EVENTS_PER_S)}",
                f"{ms(number, 50)} / {ms(number, 99)} {verdict(percentile(number, 99) < 50)}",
                f"{ms(user, 50)} / {ms(user, 99)}",
                f"{ms(hour, 50)} / {ms(hour, 99)}",
                f"{found.export_rows:,} in {found.export_s:.1f} s: {export_rate:,.0f}/s",
                f"{growth:.1f} {verdict(growth < 100)}",
            ]
        )
        print(table(HEADER, rows[-1:]), flush=True)
    body = "\n\n".join(
        [
            f"{args.messages:,} messages per store (one in ten inbound; sent ones with a result "
            f"and a delivery report), times spread over {DAYS} days, {args.queries} requests "
            f"per query kind, one at a time over HTTP to one API process. Fold: through "
            f"`ingest.apply_batch` in batches of {args.batch}. Stream: {args.stream:,} messages' "
            "events on a real nats-server, folded by the history store service from its durable "
            f"consumer. Targets: number search p99 < 50 ms; export growth < 100 MiB; ingest "
            f"≥ {TARGET_EVENTS_PER_S:,} events/s (5x the farm's peak).",
            table(HEADER, rows),
            *notes,
        ]
    )
    if args.write:
        write_section("history", "7. Message history at scale", body, command=command_line())
    else:
        print(body)


HEADER = [
    "store",
    "messages",
    "fold events/s",
    "stream ingest events/s",
    "number p50 / p99 ms (admin)",
    "number p50 / p99 ms (user)",
    "last hour p50 / p99 ms",
    "export csv",
    "export growth MiB",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--stream", type=int, default=50_000, help="messages for the stream run")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="print, do not touch RESULTS.md"
    )
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
