"""`smsgate history-store`: one durable consumer on SMS_EVENTS, folded into SQL.

Events are pulled a window ahead (smsgate_history.pulling); a batch of those that came
is applied in one transaction and each is acked after its commit, so a crash between the
two only means the batch is applied again, which changes nothing (each event is recorded
once by its id). The durable consumer starts from the
first event the stream holds, so a new store, or one that was down, catches up by
itself. `rebuild` wipes the tables and replays all that the stream still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from smsgate import bus, contracts, subjects
from smsgate import metrics as metrics_endpoint
from smsgate.config import Config
from smsgate.history import schema
from smsgate.history.database import Database, StoreError, redacted

from smsgate_history import ingest, retention
from smsgate_history.metrics import HistoryMetrics
from smsgate_history.pulling import Puller

log = logging.getLogger("smsgate.history")

FETCH_TIMEOUT = 1.0  # the longest a turn waits for events (prunes run between turns)
# While events keep coming, a fold starts at most this often and takes all that came
# meanwhile: the first event after a quiet spell is folded at once, and a busy store
# commits a few hundred events at a time, not the few dozen that came during the last
# fold (`smsgate dev` under wrk: 35 `queued` records a commit, ~37 µs each on SQLite;
# 400 a commit, ~23 µs). History shows up at most this much later.
FOLD_EVERY = 0.1
WINDOW_BATCHES = 4  # events asked for or waiting, in batches: the next ones come while one folds
ACK_WAIT = 30.0  # a store that died mid-batch: redelivered this soon
RETRY_MAX = 10.0
PRUNE_BATCHES = 25  # transactions of retention.BATCH rows per turn, between event batches
_PORT_EVENTS = subjects.event_filter("port").rstrip("*")


def consumer_config() -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=subjects.HISTORY_CONSUMER,
        filter_subject=subjects.EVENTS_WILDCARD,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT,
        max_ack_pending=20_000,
    )


async def ensure_consumer(js: JetStreamContext, *, fresh: bool = False) -> None:
    """Create the durable consumer if it is missing; `fresh`: delete it first (replay all)."""
    if fresh:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
    try:
        await js.consumer_info(subjects.EVENTS_STREAM, subjects.HISTORY_CONSUMER)
    except NotFoundError:
        await js.add_consumer(subjects.EVENTS_STREAM, consumer_config())


class Batch(msgspec.Struct):
    """What one batch did: events folded in, seen before (or not kept), unreadable."""

    applied: int = 0
    skipped: int = 0
    bad: int = 0


class HistoryStore:
    """Folds SMS_EVENTS into the history database."""

    def __init__(self, config: Config, db: Database | None = None) -> None:
        self.config = config
        self.history = config.history
        self.db = db or Database(config.history.url, name="history-store", writer=True)
        self.applied = 0  # events folded in since start
        self.metrics = HistoryMetrics()
        self._last_prune = 0.0
        self._pruned_once = False

    async def prepare(self, *, rebuild: bool = False) -> None:
        await self.db.run(schema.create)
        if rebuild:
            await self.db.run(schema.wipe)

    async def run(self, nc: Client, stop: asyncio.Event, *, rebuild: bool = False) -> None:
        js = nc.jetstream()
        await bus.provision(js, self.config.nats)
        await self._until_ready(stop, rebuild=rebuild)
        await ensure_consumer(js, fresh=rebuild)
        puller = Puller(
            nc,
            subjects.EVENTS_STREAM,
            subjects.HISTORY_CONSUMER,
            window=self.history.batch * WINDOW_BATCHES,
        )
        await puller.start()
        log.info("history store: %s, from SMS_EVENTS", redacted(self.history.url))
        # Events go on arriving while a batch is folded: NATS and the database work at
        # the same time.
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda _: puller.wake())
        last_fold = 0.0
        try:
            while not stop.is_set():
                await self._prune_when_due()
                msgs = await puller.take(
                    self.history.batch, wait=FETCH_TIMEOUT, gather_until=last_fold + FOLD_EVERY
                )
                if msgs and not stop.is_set():
                    last_fold = time.monotonic()
                    await self._fold(msgs, nc, stop)
                elif msgs:
                    for msg in msgs:  # not folded: back at once
                        with contextlib.suppress(Exception):
                            await msg.nak()
        finally:
            stopping.cancel()
            await puller.stop()

    async def _until_ready(self, stop: asyncio.Event, *, rebuild: bool) -> None:
        delay = 0.5
        while True:
            try:
                await self.prepare(rebuild=rebuild)
                return
            except StoreError as exc:
                if stop.is_set():
                    raise
                log.warning("history store not reachable (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _prune_when_due(self) -> None:
        now = time.monotonic()
        if self._pruned_once and now - self._last_prune < self.history.prune_interval:
            return
        self._pruned_once = True
        self._last_prune = now
        before = retention.cutoff(contracts.utcnow(), self.history.retention_days)
        if before is None:
            return
        try:
            removed = await retention.prune(self.db, before, batches=PRUNE_BATCHES)
        except StoreError as exc:
            log.warning(
                "history prune failed (%s); next try in %ss", exc, self.history.prune_interval
            )
            return
        if removed:
            log.info("history: pruned %d rows older than %s", removed, before.isoformat())
            # More may be left (a first prune of a big store): go on between batches of
            # events, so folding never waits for a whole prune.
            self._pruned_once = False

    async def _fold(self, msgs: Sequence[Msg], nc: Client, stop: asyncio.Event) -> None:
        events: list[ingest.Envelope] = []
        readable: list[Msg] = []
        for msg in msgs:
            if msg.subject.startswith(_PORT_EVENTS):
                await msg.ack()  # port changes are not message history
                continue
            try:
                events.append(ingest.decode(msg.data))
                readable.append(msg)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._dead_letter(nc, msg, f"unreadable event: {exc}")
                await msg.ack()
        delay = 0.5
        while True:
            try:
                await self.db.run(lambda s: ingest.apply_batch(s, events))
                break
            except StoreError as exc:
                if stop.is_set():
                    return  # not acked: redelivered to the next run
                log.warning("history store unavailable (%s); retrying the batch", exc)
                for msg in readable:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            except Exception:
                # One event the store refuses must not hold back the others: one at a time.
                await self._one_by_one(events, readable, nc)
                return
        for msg in readable:
            await msg.ack()
        self.applied += len(ingest.expand(events))  # a journal batch: its records

    async def _one_by_one(self, events: list[ingest.Envelope], msgs: list[Msg], nc: Client) -> None:
        for event, msg in zip(events, msgs, strict=True):
            try:
                await self.db.run(lambda s, e=event: ingest.apply(s, e))  # type: ignore[misc]
            except StoreError:
                return  # the store went away: the rest are redelivered
            except Exception as exc:
                log.exception("history: event %s refused by the store", event.event_id)
                await self._dead_letter(nc, msg, f"refused by the history store: {exc}")
            await msg.ack()
            self.applied += len(ingest.expand([event]))

    async def _dead_letter(self, nc: Client, msg: Msg, reason: str) -> None:
        letter = contracts.DeadLetter(
            subject=msg.subject,
            reason=reason,
            data=msg.data.decode("utf-8", errors="replace"),
            time=contracts.utcnow(),
        )
        log.error("history: dead letter from %s: %s", msg.subject, reason)
        with contextlib.suppress(Exception):
            await nc.jetstream().publish(subjects.DEAD_HISTORY, contracts.encode(letter))

    def metrics_text(self) -> str:
        return self.metrics.render(self.applied)

    async def close(self) -> None:
        await self.db.close()


async def run_history_store(config: Config, stop: asyncio.Event, *, rebuild: bool = False) -> None:
    """Keep the history store up to date with SMS_EVENTS until `stop` is set."""
    store = HistoryStore(config)
    listen = config.history.metrics_listen
    async with metrics_endpoint.serving(listen, "history.metrics_listen", [store.metrics_text]):
        await _serve(store, config, stop, rebuild=rebuild)


async def _serve(
    store: HistoryStore, config: Config, stop: asyncio.Event, *, rebuild: bool
) -> None:
    nc = await bus.connect_until(config.nats, stop, name=f"{config.nats.name}-history")
    if nc is None:  # told to stop while NATS was unreachable
        await store.close()
        return
    task = asyncio.create_task(store.run(nc, stop, rebuild=rebuild))
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
        await bus.close(nc)
