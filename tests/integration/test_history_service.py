"""The history store as a service on a real nats-server: port changes pass by, an event it
cannot read goes to the dead letters (never lost, never blocking the rest)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg
from smsgate import contracts, subjects
from smsgate.config import Config, HistoryConfig
from smsgate.contracts import (
    DeliveryReport,
    MessageQueued,
    MessageSending,
    PortEvent,
    PortState,
    PortStatus,
    SendResult,
)
from smsgate.embedded import EmbeddedPostgres, free_port
from smsgate.history import search
from smsgate.history.search import Filters, Viewer
from smsgate_history import ingest, pulling
from smsgate_history.service import HistoryStore, ensure_consumer, run_history_store

from bench import history_memory
from tests.conftest import Bus
from tests.integration.test_history_store import T0, life, queued


@contextlib.asynccontextmanager
async def running(bus: Bus, url: str) -> AsyncIterator[HistoryStore]:
    store = HistoryStore(Config(nats=bus.config, history=HistoryConfig(url=url)))
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(bus.nc, stop))
    try:
        yield store
    finally:
        stop.set()
        await task
        await store.close()


async def test_port_changes_pass_and_unreadable_events_are_dead_lettered(
    nats_bus: Bus, history_url: str
) -> None:
    state = PortState(port="lte-1", agent="a", device="/dev/x", status=PortStatus.READY, updated=T0)
    port_event = PortEvent(event_id="p1", port="lte-1", time=T0, change="up", state=state)
    await nats_bus.js.publish(subjects.event("port", "lte-1"), contracts.encode(port_event))
    await nats_bus.js.publish(subjects.event("result", "lte-1"), b'{"not": "an event"}')
    record = queued("m1", "+1555", "after the bad one")
    await nats_bus.js.publish(subjects.queued(None), contracts.encode(record))
    dead = await nats_bus.js.subscribe(subjects.DEAD_HISTORY, stream=subjects.DEAD_STREAM)
    async with running(nats_bus, history_url) as store:
        letter = contracts.decode((await dead.next_msg(timeout=30)).data, contracts.DeadLetter)
        assert letter.subject == "sms.event.result.lte-1"
        assert "unreadable event" in letter.reason
        assert letter.data == '{"not": "an event"}'
        for _ in range(400):
            if store.applied:
                break
            await asyncio.sleep(0.05)
        page = await search.page(store.db, Filters(), Viewer(name="x", admin=True))
    assert [(m.id, m.text) for m in page.messages] == [("m1", "after the bad one")]
    info = await nats_bus.js.consumer_info(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_the_store_prunes_what_is_older_than_its_retention(
    nats_bus: Bus, history_url: str
) -> None:
    old = contracts.utcnow() - dt.timedelta(days=10)
    for record in (
        queued("old", "+1555", "ten days ago", at=old),
        queued("new", "+1555", "now", at=contracts.utcnow()),
    ):
        await nats_bus.js.publish(subjects.queued(None), contracts.encode(record))
    config = Config(
        nats=nats_bus.config,
        history=HistoryConfig(url=history_url, retention_days=7, prune_interval=0.1),
    )
    store = HistoryStore(config)
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(nats_bus.nc, stop))
    try:
        for _ in range(400):
            if store.applied == 2:
                break
            await asyncio.sleep(0.05)
        assert store.applied == 2
        # Pruned at start (before they came), then every prune_interval.
        for _ in range(400):
            page = await search.page(store.db, Filters(), Viewer(name="x", admin=True))
            if [m.id for m in page.messages] == ["new"]:
                break
            await asyncio.sleep(0.05)
        assert [m.id for m in page.messages] == ["new"]
    finally:
        stop.set()
        await task
        await store.close()


async def test_postgresql_going_away_loses_nothing(nats_bus: Bus) -> None:
    # A server of its own: this one is stopped and started again mid-test.
    data = Path(tempfile.mkdtemp(prefix="smsgate-pg-outage-"))
    server = EmbeddedPostgres(data_dir=data)
    await asyncio.to_thread(server.start)
    try:
        async with running(nats_bus, server.url) as store:
            for i in range(20):
                record = queued(f"a{i}", "+1555", "before")
                await nats_bus.js.publish(subjects.queued(None), contracts.encode(record))
            await until_applied(store, 20)
            await asyncio.to_thread(server.stop)
            for i in range(30):
                record = queued(f"b{i}", "+1555", "while the database is away")
                await nats_bus.js.publish(subjects.queued(None), contracts.encode(record))
            await asyncio.sleep(1.5)  # the store meets the outage and keeps the batch
            assert store.applied == 20
            await asyncio.to_thread(server.start)
            await until_applied(store, 50)
            page = await search.page(store.db, Filters(), Viewer(name="x", admin=True), limit=100)
        assert len(page.messages) == 50
        info = await nats_bus.js.consumer_info(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
        assert info.num_ack_pending == 0
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(data, ignore_errors=True)


async def until_applied(store: HistoryStore, count: int) -> None:
    for _ in range(1200):
        if store.applied >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{store.applied} events folded, not {count}")


async def test_the_store_pulls_window_after_window_and_again_once_its_requests_expired(
    nats_bus: Bus, history_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch of 5: a window of 20 events on the way, so 240 events take many requests;
    # then the requests expire on the server while nothing comes, and the store asks again.
    monkeypatch.setattr(pulling, "EXPIRES", 0.3)
    monkeypatch.setattr(pulling, "GRACE", 0.2)
    for i in range(60):
        for event in life(f"w{i:02}", to=f"+1555000{i:02}"):
            subject = subjects.queued(None) if isinstance(event, MessageQueued) else None
            await nats_bus.js.publish(subject or _subject_of(event), contracts.encode(event))
    config = Config(nats=nats_bus.config, history=HistoryConfig(url=history_url, batch=5))
    store = HistoryStore(config)
    stop = asyncio.Event()
    task = asyncio.create_task(store.run(nats_bus.nc, stop))
    try:
        await until_applied(store, 240)
        await asyncio.sleep(1.0)  # longer than a request lives: every one of them expired
        for i in range(10):
            record = queued(f"late{i}", "+1555", "after a quiet second")
            await nats_bus.js.publish(subjects.queued(None), contracts.encode(record))
        await until_applied(store, 250)
        admin = Viewer(name="x", admin=True)
        page = await search.page(store.db, Filters(), admin, limit=100)
    finally:
        stop.set()
        await task
        await store.close()
    assert store.applied == 250
    assert len(page.messages) == 70
    assert {m.state for m in page.messages if m.id.startswith("w")} == {"delivered"}
    info = await nats_bus.js.consumer_info(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
    assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)


def _subject_of(event: object) -> str:
    if isinstance(event, MessageSending):
        return subjects.sending(event.port)
    if isinstance(event, SendResult):
        return subjects.event("result", event.port)
    assert isinstance(event, DeliveryReport)
    return subjects.event("report", event.port)


async def test_a_journal_batch_folds_in_as_its_records_and_a_withdrawal_takes_back_queued_ones(
    nats_bus: Bus, history_url: str
) -> None:
    # The API publishes the `queued` records of the requests it accepted together as one
    # message; a refused request withdraws its records, but not a message a port took.
    records = [queued(f"m{i}", "+1555", f"text {i}") for i in range(3)]
    batch = contracts.QueuedBatch(event_id="journal:1", time=T0, records=records)
    await nats_bus.js.publish(subjects.JOURNAL_QUEUED, contracts.encode(batch))
    taken = contracts.MessageSending(
        event_id="m2:sending", port="lte-1", time=T0, id="m2", to="+1555", agent="a"
    )
    await nats_bus.js.publish(subjects.sending("lte-1"), contracts.encode(taken))
    withdrawn = contracts.MessagesWithdrawn(event_id="withdrawn:1", time=T0, ids=["m1", "m2"])
    await nats_bus.js.publish(subjects.JOURNAL_WITHDRAWN, contracts.encode(withdrawn))
    # The same batch delivered again (a store that died before its ack) brings nothing back.
    await nats_bus.js.publish(subjects.JOURNAL_QUEUED, contracts.encode(batch))
    later = contracts.QueuedBatch(
        event_id="journal:2", time=T0, records=[queued("m3", "+1555", "after")]
    )
    await nats_bus.js.publish(subjects.JOURNAL_QUEUED, contracts.encode(later))
    async with running(nats_bus, history_url) as store:
        await until_applied(store, 9)  # 3 records, sending, withdrawn, 3 again, 1
        page = await search.page(store.db, Filters(), Viewer(name="x", admin=True))
    assert sorted((m.id, m.text, m.state) for m in page.messages) == [
        ("m0", "text 0", "queued"),
        ("m2", "text 2", "sending"),
        ("m3", "after", "queued"),
    ]
    info = await nats_bus.js.consumer_info(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_the_store_serves_what_it_folded_and_its_memory_on_metrics_listen(
    nats_bus: Bus, tmp_path: Path
) -> None:
    MESSAGES = 300
    listen = f"127.0.0.1:{free_port()}"
    database = tmp_path / "history.db"
    config = Config(
        nats=nats_bus.config,
        history=HistoryConfig(url=f"sqlite:///{database}", metrics_listen=listen),
    )
    for event in [e for n in range(MESSAGES) for e in life(f"m{n}")]:
        subject = subjects.queued(None) if isinstance(event, MessageQueued) else _subject_of(event)
        await nats_bus.js.publish(subject, contracts.encode(event))
    stop = asyncio.Event()
    task = asyncio.create_task(run_history_store(config, stop))
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    text = (await http.get(f"http://{listen}/metrics")).text
                    if f"smsgate_history_events_total {4 * MESSAGES}\n" in text:
                        break
                await asyncio.sleep(0.05)
            assert f"smsgate_history_events_total {4 * MESSAGES}\n" in text, text
            assert (await http.get(f"http://{listen}/healthz")).status_code == 200
    finally:
        stop.set()
        await task
    read = history_memory.parse(text)
    # Every page of a new store passed through its writer's cache (far below its ceiling),
    # each counted with SQLite's header for it; the first few of a cache SQLite allocates
    # at once, counted as `other`.
    with contextlib.closing(sqlite3.connect(database)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0] * 4096
    assert read.page_cache + read.sqlite_other >= pages > 50 * 4096
    assert read.page_cache > 0
    assert read.heap_in_use > 0


async def test_a_take_gathers_what_comes_until_its_time_unless_its_batch_is_full(
    nats_bus: Bus,
) -> None:
    # The store folds at most every FOLD_EVERY seconds while events keep coming: a take
    # gathers until the time it is given, but not past a full batch nor past a wake (stop).
    await ensure_consumer(nats_bus.js)
    puller = pulling.Puller(
        nats_bus.nc, subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER, window=100
    )
    await puller.start()

    async def publish(*mids: str) -> None:
        for mid in mids:
            record = queued(mid, "+1555", "hi")
            await nats_bus.js.publish(subjects.queued(None), contracts.encode(record))

    def ids(msgs: list[Msg]) -> list[str]:
        return [ingest.decode(m.data).id or "" for m in msgs]

    hour = 3600.0
    try:
        await publish("a1", "a2", "a3")
        # A full batch is taken at once, however long it could gather.
        first = await asyncio.wait_for(
            puller.take(2, wait=hour, gather_until=time.monotonic() + hour), 30
        )
        assert ids(first) == ["a1", "a2"]
        # Its gathering time over (the last fold long ago): what has come, at once.
        assert ids(await asyncio.wait_for(puller.take(50, wait=hour), 30)) == ["a3"]
        # Gathering: what comes meanwhile joins the batch, until the batch is full...
        await publish("b1")
        taking = asyncio.create_task(
            puller.take(4, wait=hour, gather_until=time.monotonic() + hour)
        )
        await publish("b2", "b3", "b4")
        assert ids(await asyncio.wait_for(taking, 30)) == ["b1", "b2", "b3", "b4"]
        # ... or until a wake (the store stopping).
        await publish("c1")
        taking = asyncio.create_task(
            puller.take(50, wait=hour, gather_until=time.monotonic() + hour)
        )
        await publish("c2")
        for _ in range(600):
            if puller.waiting == 2:
                break
            await asyncio.sleep(0.05)
        assert not taking.done()
        puller.wake()
        assert ids(await asyncio.wait_for(taking, 30)) == ["c1", "c2"]
    finally:
        await puller.stop()
