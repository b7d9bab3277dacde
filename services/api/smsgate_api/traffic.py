"""Traffic over the last hour, per minute: sent, failed, unknown (a send's outcome nobody
can tell), received, delivered, undelivered.

`Traffic` is the tally, plain and clock-free. `TrafficFollower` fills it from the
SMS_EVENTS stream: an ordered consumer that starts an hour back (so the chart is full at
once) and then follows new events. It runs only while a console watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from smsgate import subjects

log = logging.getLogger("smsgate.api.traffic")

WINDOW = 60  # minutes kept
KINDS = ("sent", "failed", "unknown", "received", "delivered", "undelivered")
_INDEX = {kind: i for i, kind in enumerate(KINDS)}
_RETRY = 10.0  # seconds before a failed follower is started again


class _Tally(msgspec.Struct):
    """The few fields of an event the tally reads (the rest are skipped, not decoded)."""

    time: dt.datetime
    status: str | None = None  # result
    state: str | None = None  # report


_decode_tally = msgspec.json.Decoder(_Tally).decode


def classify(kind: str, data: bytes) -> tuple[str, float] | None:
    """(tally kind, unix time) of one event, None for events not counted or unreadable."""
    try:
        event = _decode_tally(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    when = event.time.timestamp()
    if kind == "result":
        # A status this version does not know yet counts as not sent.
        return (event.status if event.status in ("sent", "unknown") else "failed"), when
    if kind == "report":
        if event.state == "unmatched":
            return None  # a report about no message we know: no message's outcome
        return ("delivered" if event.state == "delivered" else "undelivered"), when
    if kind == "inbound":
        return "received", when
    return None


class TrafficSeries(msgspec.Struct, kw_only=True):
    """Counts per minute, oldest first; the last entry is the minute that `end` closes."""

    end: int  # unix seconds: the end of the newest minute
    minutes: int
    sent: list[int]
    failed: list[int]
    unknown: list[int]
    received: list[int]
    delivered: list[int]
    undelivered: list[int]
    loaded: bool  # False while the last hour is still being read


class Traffic:
    """Per-minute counts of each kind, farm-wide and per port, for the last WINDOW minutes."""

    def __init__(self) -> None:
        # minute number (unix // 60) -> counts by KINDS index, farm-wide and by port
        self._totals: dict[int, list[int]] = {}
        self._ports: dict[int, dict[str, list[int]]] = {}
        self.loaded = False

    def add(self, kind: str, port: str, when: float, now: float) -> None:
        minute = int(when // 60)
        newest = int(now // 60)
        if minute <= newest - WINDOW or minute > newest + 1:
            return
        index = _INDEX[kind]
        totals = self._totals.get(minute)
        if totals is None:
            totals = self._totals[minute] = [0] * len(KINDS)
            self._ports[minute] = {}
        totals[index] += 1
        ports = self._ports[minute]
        counts = ports.get(port)
        if counts is None:
            counts = ports[port] = [0] * len(KINDS)
        counts[index] += 1

    def prune(self, now: float) -> None:
        oldest = int(now // 60) - WINDOW
        for minute in [m for m in self._totals if m <= oldest]:
            del self._totals[minute], self._ports[minute]

    def series(self, now: float, ports: Iterable[str] | None = None) -> TrafficSeries:
        """The last WINDOW minutes up to `now`, over every port or only `ports`."""
        newest = int(now // 60)
        wanted = None if ports is None else list(ports)
        rows = [[0] * WINDOW for _ in KINDS]
        for offset, minute in enumerate(range(newest - WINDOW + 1, newest + 1)):
            if minute not in self._totals:
                continue
            if wanted is None:
                found = [self._totals[minute]]
            else:
                by_port = self._ports[minute]
                found = [by_port[p] for p in wanted if p in by_port]
            for counts in found:
                for i, count in enumerate(counts):
                    rows[i][offset] += count
        return TrafficSeries(
            end=(newest + 1) * 60,
            minutes=WINDOW,
            sent=rows[0],
            failed=rows[1],
            unknown=rows[2],
            received=rows[3],
            delivered=rows[4],
            undelivered=rows[5],
            loaded=self.loaded,
        )


class TrafficFollower:
    """Keeps a `Traffic` current from SMS_EVENTS while at least one watcher holds it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.traffic = Traffic()
        self._now = clock
        self._watchers = 0
        self._task: asyncio.Task[None] | None = None
        self._js: JetStreamContext | None = None
        self._retry_at = 0.0

    def hold(self, js: JetStreamContext | None) -> None:
        """One more watcher; starts following when `js` is there and nobody did yet."""
        self._watchers += 1
        self.attach(js)

    def attach(self, js: JetStreamContext | None) -> None:
        """Start (or restart, after NATS came back with a new context) the follower."""
        if js is None or self._watchers == 0:
            return
        running = self._task is not None and not self._task.done()
        if js is self._js and (running or time.monotonic() < self._retry_at):
            return
        if self._task is not None:
            self._task.cancel()
        self._js = js
        self._retry_at = time.monotonic() + _RETRY
        self.traffic = Traffic()
        self._task = asyncio.create_task(self._follow(js), name="console-traffic")

    async def release(self) -> None:
        """One watcher fewer; the last one stops the follower."""
        self._watchers -= 1
        if self._watchers > 0 or self._task is None:
            return
        task, self._task, self._js = self._task, None, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _follow(self, js: JetStreamContext) -> None:
        traffic = self.traffic
        start = dt.datetime.fromtimestamp((int(self._now() // 60) - WINDOW + 1) * 60, dt.UTC)
        filters = [subjects.event_filter(kind) for kind in ("result", "report", "inbound")]

        async def count(msg: Msg) -> None:
            try:
                kind, port = subjects.parse_event_subject(msg.subject)
            except ValueError:
                return
            found = classify(kind, msg.data)
            if found is not None:
                traffic.add(found[0], port, found[1], self._now())

        config = ConsumerConfig(
            filter_subjects=filters,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            inactive_threshold=60.0,
        )
        sub = None
        try:
            sub = await js.subscribe(
                filters[0],
                stream=subjects.EVENTS_STREAM,
                ordered_consumer=True,
                config=config,
                cb=count,
            )
            while not traffic.loaded:
                await asyncio.sleep(0.25)
                info = await sub.consumer_info()
                traffic.loaded = info.num_pending == 0 and sub.pending_msgs == 0
            while True:
                await asyncio.sleep(30)
                traffic.prune(self._now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("console traffic: cannot follow the event stream: %s", exc)
            traffic.loaded = True
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
