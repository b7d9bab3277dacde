"""Benchmark 7: the message history at scale, on SQLite and on PostgreSQL.

For each backend, in one fresh store:

1. **Seeded** (not through NATS): N messages' events folded straight in by the store's
   own code (`ingest.apply_batch`, `[history] batch` events per transaction, each decoded
   from its wire JSON): a `queued` record, a `sending` record, a send result with its
   TP-MR and a delivery report for each sent message; one in ten is an inbound SMS
   instead. Times spread over the last 30 days, numbers over N/10 parties, random ids.
2. **Queries**, the API started as its own process on that store and asked over HTTP, one
   request at a time: a search by number (`?number=`, a page of 50) as an admin and as a
   user, the newest page of the last hour (`?since=`): p50 / p99; an export of everything
   (`?format=csv`): rows/s, and the API process's peak resident memory above its own
   before the export.
3. **Ingest from NATS**: `--stream` more messages' events published to SMS_EVENTS on a
   real nats-server, in the order a farm at its peak makes them (a message every
   millisecond; its `sending`, result and report 0.05, 2 and 9 s after its `queued`, so
   one message's events are thousands apart) and as the services publish them (the
   API's `queued` records `--journal` to a `QueuedBatch`, the rest one per message;
   events are counted as records, not bus messages), then `smsgate history-store` started by
   its command line on the same store, timed from its consumer's first ack to its last
   (read from the server), with the CPU per event of the store, nats-server and
   PostgreSQL's server processes.

Targets (issue 19): number search p99 < 50 ms; export memory growth < 100 MiB; ingest
at least 5x the farm benchmark's peak event rate. The farm's peak (`scripts/bench farm`,
P = 1024, 1 agent, reports on; its full run of 2026-11-25) is 998.3 delivered parts/s;
a single-part message with a report brings four events to SMS_EVENTS (the API's
`queued` record, the agent's `sending` record, its result, its report; the report ledger
lives in a KV, not here): 998.3 x 4 = 3,993 events/s, x 5 = 19,966, so 20,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import heapq
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import uvloop
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError
from smsgate import bus, contracts, subjects
from smsgate.config import HistoryConfig, NatsConfig
from smsgate.contracts import (
    DeliveryReport,
    DeliveryState,
    InboundSms,
    MessageQueued,
    MessageSending,
    PartResult,
    QueuedBatch,
    SendResult,
    SendStatus,
)
from smsgate.embedded import EmbeddedNats, EmbeddedPostgres
from smsgate.history import schema
from smsgate.history.database import Database, Session
from smsgate_api.auth import hash_password
from smsgate_api.ids import time_ordered
from smsgate_history import ingest

from bench.bench_api import SERVE_API
from bench.common import (
    PYTHON,
    command_line,
    cpu_seconds,
    free_port,
    note_load,
    percentile,
    processes,
    rss_bytes,
    smsgate_argv,
    spawn,
    table,
    verdict,
    wait_port,
    workdir,
    write_section,
    write_toml,
)

ADMIN, USER, PASSWORD = "bench-admin", "user-7", "benchpass"
USERS = 20
PORTS = 64
DAYS = 30
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TARGET_EVENTS_PER_S = 20_000


SENDING_AFTER, RESULT_AFTER, REPORT_AFTER = 0.05, 2.0, 9.0  # seconds after `queued`
FARM_PEAK_MESSAGES_PER_S = 1000  # single-part messages: the farm's peak parts/s, rounded
# `queued` records per journal message the API publishes under load (smsgate_api/journal.py:
# the records of one loop turn; 1,289 journal messages for 18,548 jobs under wrk,
# RESULTS.md issue 21).
JOURNAL_RECORDS = 14


def events(
    count: int, seed: int = 7, spacing: float | None = None, *, ordered_ids: bool = True
) -> Iterator[msgspec.Struct]:
    """`count` messages' events in the order of their times, as the stream holds them:
    one message every `spacing` seconds (default: spread over DAYS), the last at NOW;
    each sent one's `sending`, result and report follow its `queued` by SENDING_AFTER,
    RESULT_AFTER and REPORT_AFTER, interleaved with later messages' events. Message ids
    sort by time as the API's do (`ids.time_ordered`), or are random hex as the API made
    them before (`ordered_ids` false)."""
    rng = random.Random(seed)
    gap = spacing if spacing is not None else DAYS * 86400 / max(count, 1)
    numbers = max(count // 10, 1)
    waiting: list[tuple[dt.datetime, int, msgspec.Struct]] = []  # a heap, by time
    order = 0
    for i in range(count):
        when = NOW - dt.timedelta(seconds=gap * (count - 1 - i))
        while waiting and waiting[0][0] <= when:
            yield heapq.heappop(waiting)[2]
        for at, event in message_events(rng, i, when, numbers, ordered_ids):
            order += 1
            heapq.heappush(waiting, (at, order, event))
    while waiting:
        yield heapq.heappop(waiting)[2]


def message_events(
    rng: random.Random, i: int, when: dt.datetime, numbers: int, ordered_ids: bool
) -> list[tuple[dt.datetime, msgspec.Struct]]:
    """One message's events with their times: one in ten is inbound, the rest sent."""
    mid = f"{rng.getrandbits(128):032x}"
    if ordered_ids:
        mid = time_ordered(int(when.timestamp() * 1000), mid)
    number = f"+1555{rng.randrange(numbers):07d}"
    port = f"lte-{rng.randrange(1, PORTS + 1)}"
    if i % 10 == 9:
        inbound = InboundSms(
            event_id=f"{mid}:in",
            port=port,
            time=when,
            id=mid,
            sender=number,
            text=f"reply {i} to offer {rng.randrange(1000)}",
            smsc_time=when,
        )
        return [(when, inbound)]
    user = f"user-{rng.randrange(USERS)}"
    sending = when + dt.timedelta(seconds=SENDING_AFTER)
    done = when + dt.timedelta(seconds=RESULT_AFTER)
    reported = when + dt.timedelta(seconds=REPORT_AFTER)
    failed = rng.random() < 0.03
    found: list[tuple[dt.datetime, msgspec.Struct]] = [
        (
            when,
            MessageQueued(
                event_id=f"{mid}:queued",
                id=mid,
                to=number,
                user=user,
                text=f"Your code is {rng.randrange(10**6):06d}, order {i}",
                time=when,
            ),
        ),
        (
            sending,
            MessageSending(
                event_id=f"{mid}:sending",
                port=port,
                port_number=int(port.rsplit("-", 1)[1]),
                imsi="460004372167365",
                time=sending,
                id=mid,
                to=number,
                agent="bench-agent",
                user=user,
            ),
        ),
        (
            done,
            SendResult(
                event_id=f"{mid}:result",
                port=port,
                imsi="460004372167365",
                time=done,
                id=mid,
                to=number,
                user=user,
                status=SendStatus.FAILED if failed else SendStatus.SENT,
                reason="+CMS ERROR: 38" if failed else None,
                parts=[] if failed else [PartResult(sequence=1, reference=i % 256)],
            ),
        ),
    ]
    if not failed:
        report = DeliveryReport(
            event_id=f"{mid}:report",
            port=port,
            id=mid,
            to=number,
            user=user,
            time=reported,
            state=DeliveryState.DELIVERED,
        )
        found.append((reported, report))
    return found


def journaled(stream: Iterator[msgspec.Struct], size: int) -> Iterator[msgspec.Struct]:
    """The events as the API publishes them: the `queued` records of `size` messages
    accepted together as one `QueuedBatch` (journal.py), out when its last record is in,
    the other events as they come (`size` 1: each record alone, as before)."""
    records: list[MessageQueued] = []
    for event in stream:
        if size > 1 and isinstance(event, MessageQueued):
            records.append(event)
            if len(records) == size:
                yield _journal(records)
                records = []
        else:
            yield event
    if records:
        yield _journal(records)


def _journal(records: list[MessageQueued]) -> QueuedBatch:
    last = records[-1]
    return QueuedBatch(event_id=f"journal:{last.id}", time=last.time, records=records)


def batches(count: int, size: int, ordered_ids: bool) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for event in events(count, ordered_ids=ordered_ids):
        batch.append(contracts.encode(event))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def fill(url: str, count: int, batch: int, ordered_ids: bool) -> tuple[int, float]:
    """Fold `count` messages' events into a fresh store; (events, seconds)."""
    db = Database(url, writer=True)
    await db.run(schema.create)
    folded = 0
    started = time.perf_counter()
    last = started
    for chunk in batches(count, batch, ordered_ids):

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
    path = write_toml(work / "api.toml", config)
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


@dataclass
class StreamFigures:
    events: int  # folded in the timed window (from the first ack to the last)
    seconds: float
    store_cpu_us: float  # the store process's CPU per event
    nats_cpu_us: float
    database_cpu_us: float  # PostgreSQL's server processes (0 for SQLite: in the store)
    written: float  # bytes per event written by the database (WAL, checkpoints, files)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def family(parent: int) -> list[int]:
    """`parent` and its direct children (PostgreSQL's postmaster and its backends)."""
    found = [parent]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def written_bytes(pid: int) -> int:
    """Bytes the process has written with write() and the like (/proc/PID/io `wchar`)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _sum(read: Callable[[int], float], pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += read(pid)
    return total


async def publish(js: JetStreamContext, count: int, ordered_ids: bool, journal: int) -> list[int]:
    """Publish the events; for each stream sequence from 0, the events (records, not
    bus messages: a journal batch counts as the records it holds) stored up to it."""
    records_at: dict[int, int] = {}
    pending: list[tuple[int, Awaitable[PubAck]]] = []
    gap = 1 / FARM_PEAK_MESSAGES_PER_S

    async def settle() -> None:
        acks = await asyncio.gather(*(ack for _, ack in pending))
        for (records, _), ack in zip(pending, acks, strict=True):
            records_at[ack.seq] = records
        pending.clear()

    stream = events(count, seed=13, spacing=gap, ordered_ids=ordered_ids)
    for event in journaled(stream, journal):
        records = 1
        if isinstance(event, QueuedBatch):
            subject = subjects.JOURNAL_QUEUED
            records = len(event.records)
        elif isinstance(event, MessageQueued):
            subject = subjects.queued(None)
        elif isinstance(event, MessageSending):
            subject = subjects.sending("lte-1")
        else:
            subject = subjects.event(str(event.__struct_config__.tag), "lte-1")
        pending.append((records, js.publish(subject, contracts.encode(event))))
        if len(pending) == 500:
            await settle()
    await settle()
    upto = [0]
    for seq in range(1, max(records_at) + 1):
        upto.append(upto[-1] + records_at[seq])
    return upto


async def stream_ingest(
    url: str,
    count: int,
    batch: int,
    work: Path,
    database_pid: int | None,
    ordered_ids: bool,
    journal: int,
) -> StreamFigures:
    """Publish `count` messages' events to SMS_EVENTS, then start `smsgate history-store`
    (its own process, by its command line) on the store and time it folding them all: from
    its consumer's first ack to its last, read from the consumer's state on the server."""
    nats = EmbeddedNats(store_dir=work / "nats")
    await nats.astart()
    try:
        nc = await bus.connect(NatsConfig(url=nats.url))
        js = nc.jetstream()
        await bus.provision(js, NatsConfig(url=nats.url))
        print(f"  publishing {count:,} messages' events to SMS_EVENTS", flush=True)
        upto = await publish(js, count, ordered_ids, journal)
        published = len(upto) - 1
        config = write_toml(
            work / "history-store.toml",
            {"nats": {"url": nats.url}, "history": {"url": url, "batch": batch}},
        )
        print(
            f"  {upto[-1]:,} events in {published:,} messages published; "
            "starting smsgate history-store",
            flush=True,
        )
        with processes() as started:
            store = spawn("history-store", smsgate_argv("history-store", "-c", str(config)), work)
            started.append(store)
            pids = [store.popen.pid, nats.pid or 0]
            first: tuple[float, int, list[float]] | None = None
            while True:
                store.alive()
                try:
                    info = await js.consumer_info(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
                except NotFoundError:
                    await asyncio.sleep(0.02)
                    continue
                now = time.perf_counter()
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                floor = floor or 0
                if first is None and floor > 0:
                    first = (now, floor, _cpu(pids, database_pid))
                if floor >= published and not info.num_ack_pending and not info.num_pending:
                    break
                await asyncio.sleep(0.02)
            assert first is not None
            cpu = _cpu(pids, database_pid)
            folded = upto[floor] - upto[first[1]]
            pairs = zip(first[2], cpu, strict=True)
            deltas = [(after - before) / folded for before, after in pairs]
            per_event = [delta * 1e6 for delta in deltas[:3]] + deltas[3:]
        await nc.close()
        return StreamFigures(folded, now - first[0], *per_event)
    finally:
        await nats.astop()


def _cpu(pids: list[int], database_pid: int | None) -> list[float]:
    """CPU seconds of the store, nats-server and PostgreSQL; bytes the database wrote (the
    store's own writes for SQLite, PostgreSQL's processes' otherwise)."""
    database = family(database_pid) if database_pid else []
    writers = database or [pids[0]]
    return [
        cpu_seconds(pids[0]),
        cpu_seconds(pids[1]),
        _sum(cpu_seconds, database),
        _sum(written_bytes, writers),
    ]


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}"


async def amain(args: argparse.Namespace) -> None:
    note_load("history")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rows: list[list[object]] = []
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
                print(f"[{backend}] seeding {args.messages:,} messages", flush=True)
                folded, seconds = await fill(url, args.messages, args.batch, args.ordered_ids)
                fold_rate = folded / seconds
                print(f"[{backend}] {folded:,} events in {seconds:.1f} s: {fold_rate:,.0f}/s")
                found = await asyncio.to_thread(measure_api, url, args.messages, args.queries, work)
                print(f"[{backend}] ingest of {args.stream:,} more messages from NATS", flush=True)
                database_pid = postgres.pid if backend == "postgresql" else None
                stream = await stream_ingest(
                    url, args.stream, args.batch, work, database_pid, args.ordered_ids, args.journal
                )
            finally:
                await asyncio.to_thread(postgres.stop)
                shutil.rmtree(pg_dir, ignore_errors=True)
        number, user, hour = found.number, found.number_user, found.last_hour
        export_rate = found.export_rows / found.export_s
        growth = found.export_growth_mib
        rows.append(
            [
                backend,
                f"{args.messages:,}",
                f"{folded:,} in {seconds:.0f} s: {fold_rate:,.0f}/s",
                f"{stream.rate:,.0f} {verdict(stream.rate >= TARGET_EVENTS_PER_S)}",
                f"{stream.store_cpu_us:.0f} / {stream.nats_cpu_us:.0f} / "
                f"{stream.database_cpu_us:.0f}",
                f"{stream.written / 1024:.1f}",
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
            f"Seeded: {args.messages:,} messages per store (one in ten inbound; each sent one "
            "with its queued, sending, result and delivery report events), times spread over "
            f"{DAYS} days, message ids {IDS[args.ordered_ids]}, folded straight into the "
            "store by `ingest.apply_batch` in batches "
            f"of {args.batch} (no NATS). Queries: {args.queries} requests per kind, one at a "
            "time over HTTP to one API process on that store. Ingest: then "
            f"{args.stream:,} more messages' events published to SMS_EVENTS on a real "
            "nats-server as the services publish them (the API's `queued` records "
            f"{args.journal} to a journal message, the agent's `sending`, results and reports "
            "one each) and folded into the same store by `smsgate history-store` (its own "
            "process, by its command line), timed from its consumer's first ack to its last; "
            "events are counted as records (a journal message counts as the records it "
            "holds), not bus messages; "
            "CPU per event of the store process, nats-server and PostgreSQL's server "
            "processes over that window. Targets: number search p99 < 50 ms; export growth "
            f"< 100 MiB; ingest ≥ {TARGET_EVENTS_PER_S:,} events/s (5× the farm's peak).",
            table(HEADER, rows),
        ]
    )
    if args.write:
        write_section("history", "7. Message history at scale", body, command=command_line())
    else:
        print(body)


IDS = {
    False: "random (as the API made them before)",
    True: "sorting by time (as the API makes them)",
}

HEADER = [
    "store",
    "messages",
    "seeded (events, in-process)",
    "ingest from NATS, events/s",
    "ingest CPU µs/event: store / nats / PostgreSQL",
    "ingest: database writes KiB/event",
    "number p50 / p99 ms (admin)",
    "number p50 / p99 ms (user)",
    "last hour p50 / p99 ms",
    "export csv",
    "export growth MiB",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--stream", type=int, default=100_000, help="messages ingested from NATS")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=HistoryConfig().batch)
    parser.add_argument(
        "--journal",
        type=int,
        default=JOURNAL_RECORDS,
        help="`queued` records per journal message in the stream (1: each alone)",
    )
    parser.add_argument(
        "--random-ids",
        dest="ordered_ids",
        action="store_false",
        help="random message ids, as the API made them before they sorted by time",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="print, do not touch RESULTS.md"
    )
    uvloop.run(amain(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
