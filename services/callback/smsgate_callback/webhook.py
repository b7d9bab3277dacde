"""One webhook: its own durable pull consumer on SMS_EVENTS, turned into HTTP calls.

Unordered webhooks retry through JetStream: a failed attempt is `nak`ed with the back-off
delay, so the server holds the event (and its delivery count) while other events flow,
and a restart keeps the schedule. Ordered webhooks keep one lane per port and retry the
head of a lane in process, sending `in_progress` heartbeats, since a later event of that
port must wait anyway. Either way an event is acked only after a 2xx or a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from smsgate import contracts, subjects

from smsgate_callback import delivery
from smsgate_callback.delivery import AttemptOutcome, AttemptVerdict, Target
from smsgate_callback.metrics import CallbackMetrics, metrics
from smsgate_callback.retry import BackoffPolicy

log = logging.getLogger("smsgate.callback")

FETCH_BATCH = 100
FETCH_TIMEOUT = 0.5  # seconds; also how long a stop may wait for the fetch loop
MAX_ACK_PENDING = 10_000  # events fetched or waiting on a nak delay, per webhook
ORDERED_WINDOW = 1_000  # events an ordered webhook holds in its port lanes
UNORDERED_DEPTH = 4  # an unordered webhook holds up to this many events per call in flight
ACK_DELAY = 0.01  # seconds acks wait to leave together: one socket write for many events

Action = Literal["delivered", "retry", "dead", "released"]


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """Everything one webhook needs, resolved from the config."""

    name: str
    target: Target
    kinds: tuple[str, ...] = ("result", "report", "inbound")
    ports: tuple[str, ...] = ("*",)
    concurrency: int = 8
    ordered: bool = False
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    start: Literal["new", "all"] = "new"
    verify: bool = True
    ca_file: str | None = None

    @property
    def consumer(self) -> str:
        """The durable consumer's name on SMS_EVENTS."""
        return f"callback-{subjects.check_port_name(self.name)}"

    @property
    def ack_wait(self) -> float:
        """How long the server waits before redelivering an event a crashed worker held."""
        return max(30.0, 3 * self.target.timeout)

    def filter_subjects(self) -> list[str]:
        """One subject filter per kind and port, `*` standing for every port."""
        ports: list[str | None] = (
            [None] if "*" in self.ports else [subjects.check_port_name(p) for p in self.ports]
        )
        kinds = sorted(set(self.kinds), key=subjects.EVENT_KINDS.index)
        return [subjects.event_filter(kind, port) for kind in kinds for port in ports]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What the worker decided about one event, for tests and logs."""

    webhook: str
    subject: str
    event_id: str
    attempt: int
    action: Action
    outcome: AttemptOutcome | None = None
    delay: float | None = None
    reason: str = ""


Observer = Callable[[AttemptRecord], None]


def _ssl_context(spec: WebhookSpec) -> ssl.SSLContext | bool:
    if not spec.verify:
        return False
    return ssl.create_default_context(cafile=spec.ca_file)


def _env_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, less
    NO_PROXY), as httpx.AsyncClient would pick it; None to connect directly."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def http_transports(spec: WebhookSpec) -> list[httpx.AsyncBaseTransport]:
    """`concurrency` keep-alive connections to the webhook's URL, each a pool of its own.

    httpcore checks every connection of a pool (has it expired?) twice per request: one
    pool of N connections costs 2N checks a request, N pools of one cost 2.
    """
    verify = _ssl_context(spec)
    proxy = _env_proxy(spec.target.url)
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return [
        httpx.AsyncHTTPTransport(verify=verify, limits=one, proxy=proxy)
        for _ in range(spec.concurrency)
    ]


class WebhookWorker:
    """Pull events for one webhook and deliver each at least once, or dead-letter it."""

    def __init__(
        self,
        spec: WebhookSpec,
        nc: Client,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: CallbackMetrics = metrics,
        on_attempt: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self._nc = nc
        self._js = nc.jetstream()
        self._transport = transport
        self._metrics = registry
        self._on_attempt = on_attempt
        self._clock = clock
        self._held: dict[int, Msg] = {}  # stream sequence -> message not yet acked or naked
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lanes: dict[str, deque[Msg]] = {}
        self._slots = asyncio.Semaphore(spec.concurrency)  # calls in flight, ordered lanes
        self._waiting: deque[Msg] = deque()  # unordered: fetched, no caller yet
        self._callers = 0  # unordered: tasks taking events from _waiting
        self._acks: deque[Msg] = deque()  # delivered, ack not yet written
        self._acks_waiting = asyncio.Event()
        self._template = delivery.RequestTemplate(spec.target)
        self._free: list[httpx.AsyncBaseTransport] = []  # one per call that may be in flight

    # --- consumer ------------------------------------------------------------------------

    async def _subscribe(self, stop: asyncio.Event) -> JetStreamContext.PullSubscription | None:
        """The worker's pull subscription, retried while NATS is away; None once stopped."""
        while not stop.is_set():
            try:
                await self.ensure_consumer()
                return await self._js.pull_subscribe_bind(
                    durable=self.spec.consumer, stream=subjects.EVENTS_STREAM
                )
            except (NatsTimeoutError, TimeoutError, NoRespondersError) as exc:  # NATS is away
                log.warning("webhook %s: cannot set up its consumer: %s", self.spec.name, exc)
                await _first(asyncio.sleep(FETCH_TIMEOUT), stop.wait())
        return None

    async def ensure_consumer(self) -> None:
        """Create the durable consumer, or update its filter and limits, keeping its position."""
        spec = self.spec
        filters = spec.filter_subjects()
        config = ConsumerConfig(
            name=spec.consumer,
            durable_name=spec.consumer,
            description=f"smsgate callback webhook {spec.name}",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait,
            max_deliver=-1,
            max_ack_pending=MAX_ACK_PENDING,
            deliver_policy=DeliverPolicy.NEW if spec.start == "new" else DeliverPolicy.ALL,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
        )
        try:
            info = await self._js.consumer_info(subjects.EVENTS_STREAM, spec.consumer)
        except NotFoundError:
            pass
        else:
            # The server refuses to change where an existing consumer starts.
            config.deliver_policy = info.config.deliver_policy
            config.opt_start_seq = info.config.opt_start_seq
            config.opt_start_time = info.config.opt_start_time
        await self._js.add_consumer(subjects.EVENTS_STREAM, config)

    # --- main loop -----------------------------------------------------------------------

    @property
    def _window(self) -> int:
        return ORDERED_WINDOW if self.spec.ordered else UNORDERED_DEPTH * self.spec.concurrency

    def _room_to_fetch(self) -> int:
        """How many events to ask for now; 0 until enough have finished.

        An unordered webhook refills once half its window is free, so one fetch round trip
        serves many events while the calls in flight keep going on the rest.
        """
        room = self._window - len(self._held)
        if not self.spec.ordered and self._held and room < self._window // 2:
            return 0
        return max(room, 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then hand every unfinished event back to the server."""
        sub = await self._subscribe(stop)
        if sub is None:
            return
        if self._transport is not None:
            self._free = [self._transport] * self.spec.concurrency
        else:
            self._free = http_transports(self.spec)
        transports = list({id(t): t for t in self._free}.values())
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        stopping = asyncio.create_task(self._wake_on(stop))
        acker = asyncio.create_task(self._acker())
        try:
            while not stop.is_set():
                room = self._room_to_fetch()
                if room <= 0:
                    self._room.clear()
                    await self._room.wait()
                    continue
                try:
                    batch = await sub.fetch(min(room, FETCH_BATCH), timeout=FETCH_TIMEOUT)
                except (NatsTimeoutError, TimeoutError):  # nats-py raises either
                    continue
                except NatsError as exc:  # reconnecting: the client retries by itself
                    log.warning("webhook %s: fetch failed: %s", self.spec.name, exc)
                    await _first(asyncio.sleep(FETCH_TIMEOUT), stop.wait())
                    continue
                for msg in batch:
                    self._take(msg)
        finally:
            heartbeat.cancel()
            stopping.cancel()
            acker.cancel()
            await self._shutdown()
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
            for transport in transports:
                await transport.aclose()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._room.set()

    def _take(self, msg: Msg) -> None:
        self._held[msg.metadata.sequence.stream] = msg
        self._metrics.in_flight.inc(self.spec.name)
        if not self.spec.ordered:
            self._waiting.append(msg)
            if self._callers < self.spec.concurrency:
                self._callers += 1
                self._spawn(self._call_unordered())
            return
        port = _port_of(msg.subject)
        lane = self._lanes.get(port)
        if lane is None:
            self._lanes[port] = deque([msg])
            self._spawn(self._run_lane(port))
        else:
            lane.append(msg)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._send_acks()
        for msg in list(self._held.values()):
            # Unfinished: let the server hand it out again at once, here or to a peer.
            with contextlib.suppress(NatsError):
                await msg.nak()
            self._release(msg)
            self._record(msg, _event_id(msg), msg.metadata.num_delivered, "released")
        self._lanes.clear()
        self._waiting.clear()
        with contextlib.suppress(NatsError, asyncio.TimeoutError):
            await self._nc.flush(timeout=2)

    async def _acker(self) -> None:
        # Acks are fire-and-forget publishes; sent one by one, each is a socket write (and
        # a wake-up of nats-server). Held for ACK_DELAY they leave in one write.
        while True:
            await self._acks_waiting.wait()
            await asyncio.sleep(ACK_DELAY)
            await self._send_acks()

    async def _send_acks(self) -> None:
        self._acks_waiting.clear()
        while self._acks:
            msg = self._acks.popleft()
            try:
                await msg.ack()
            except NatsError as exc:
                # Delivered but not acked: the server offers it again after ack_wait.
                log.warning("webhook %s: ack of %s failed: %s", self.spec.name, msg.subject, exc)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        # Ordered lanes hold events across back-off pauses; keep the server from taking them.
        while not stop.is_set():
            await _first(asyncio.sleep(self.spec.ack_wait / 3), stop.wait())
            for msg in list(self._held.values()):
                with contextlib.suppress(NatsError):
                    await msg.in_progress()

    # --- one event -----------------------------------------------------------------------

    async def _call_unordered(self) -> None:
        # One of at most `concurrency` callers, each with its own connection; each goes on
        # to the next waiting event rather than ending, so an event costs no task of its own.
        transport = self._free.pop()
        try:
            while self._waiting:
                msg = self._waiting.popleft()
                await self._guarded(msg, self._deliver_once(msg, transport))
        finally:
            self._free.append(transport)
            self._callers -= 1

    async def _deliver_once(self, msg: Msg, transport: httpx.AsyncBaseTransport) -> None:
        event = await self._decode(msg)
        if event is not None:
            attempt = msg.metadata.num_delivered
            outcome = await self._attempt(transport, event, attempt)
            await self._settle(msg, event, attempt, outcome, in_process=False)

    async def _run_lane(self, port: str) -> None:
        lane = self._lanes[port]
        while lane:
            await self._guarded(lane[0], self._deliver_in_order(lane[0]))
            lane.popleft()
        del self._lanes[port]

    async def _deliver_in_order(self, msg: Msg) -> None:
        event = await self._decode(msg)
        if event is None:
            return
        attempt = msg.metadata.num_delivered
        while True:
            async with self._slots:
                transport = self._free.pop()
                try:
                    outcome = await self._attempt(transport, event, attempt)
                finally:
                    self._free.append(transport)
            delay = await self._settle(msg, event, attempt, outcome, in_process=True)
            if delay is None:
                return
            await asyncio.sleep(delay)
            attempt += 1

    async def _guarded(self, msg: Msg, work: Coroutine[Any, Any, None]) -> None:
        """Run `work`; if NATS fails under it, stop holding the event so it comes back."""
        try:
            await work
        except NatsError as exc:
            # Unacked and no longer heartbeated: the server redelivers it after ack_wait.
            log.warning("webhook %s: %s left for redelivery: %s", self.spec.name, msg.subject, exc)
            self._release(msg)

    async def _decode(self, msg: Msg) -> contracts.Event | None:
        """The event, or None after an undecodable one went to the dead letters."""
        try:
            return contracts.decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead(msg, "", msg.metadata.num_delivered, "undecodable", f"{exc}")
            return None

    async def _attempt(
        self, transport: httpx.AsyncBaseTransport, event: contracts.Event, attempt: int
    ) -> AttemptOutcome:
        try:
            request = self._template.build(event, attempt=attempt, now=self._clock())
            outcome = await delivery.attempt(transport, request, self.spec.target.timeout)
        except Exception as exc:  # a bug must not lose the event: retry it and say why
            log.exception("webhook %s: attempt failed unexpectedly", self.spec.name)
            outcome = AttemptOutcome(AttemptVerdict.RETRY, "error", f"{type(exc).__name__}: {exc}")
        self._metrics.attempts.inc(self.spec.name, outcome.label)
        self._metrics.latency.observe(outcome.latency, self.spec.name)
        return outcome

    async def _settle(
        self,
        msg: Msg,
        event: contracts.Event,
        attempt: int,
        outcome: AttemptOutcome,
        *,
        in_process: bool,
    ) -> float | None:
        """Ack, nak or dead-letter after an attempt; the pause when the caller retries itself."""
        if outcome.verdict is AttemptVerdict.DELIVERED:
            self._acks.append(msg)
            self._acks_waiting.set()
            self._release(msg)
            self._metrics.deliveries.inc(self.spec.name, "delivered")
            self._record(msg, event.event_id, attempt, "delivered", outcome)
            return None
        if outcome.verdict is AttemptVerdict.PERMANENT:
            await self._dead(msg, event.event_id, attempt, "permanent", outcome.error, outcome)
            return None
        age = self._clock() - msg.metadata.timestamp.timestamp()
        delay = self.spec.policy.next_retry(attempt, age, outcome.retry_after)
        if delay is None:
            reason = f"gave up after {attempt} attempts over {age:.0f}s: {outcome.error}"
            await self._dead(msg, event.event_id, attempt, "expired", reason, outcome)
            return None
        self._record(msg, event.event_id, attempt, "retry", outcome, delay)
        if in_process:
            return delay
        await msg.nak(delay=delay)
        self._release(msg)
        return None

    async def _dead(
        self,
        msg: Msg,
        event_id: str,
        attempt: int,
        kind: str,
        reason: str,
        outcome: AttemptOutcome | None = None,
    ) -> None:
        letter = contracts.DeadLetter(
            subject=msg.subject,
            reason=reason,
            data=msg.data.decode("utf-8", errors="replace"),
            time=contracts.utcnow(),
        )
        headers = {"Smsgate-Webhook": self.spec.name, "Smsgate-Attempts": str(attempt)}
        if event_id:
            headers["Smsgate-Event-Id"] = event_id
        try:
            await self._js.publish(
                subjects.dead_callback(self.spec.name), contracts.encode(letter), headers=headers
            )
        except NatsError as exc:
            # Keep the event rather than drop it: the server offers it again later.
            log.error("webhook %s: dead letter not stored (%s); retrying", self.spec.name, exc)
            await msg.nak(delay=self.spec.policy.maximum)
            self._release(msg)
            return
        await msg.ack()
        self._release(msg)
        self._metrics.dead_letters.inc(self.spec.name, kind)
        self._metrics.deliveries.inc(self.spec.name, "dead")
        log.warning("webhook %s: dead letter for %s: %s", self.spec.name, msg.subject, reason)
        self._record(msg, event_id, attempt, "dead", outcome, reason=reason)

    def _release(self, msg: Msg) -> None:
        if self._held.pop(msg.metadata.sequence.stream, None) is not None:
            self._metrics.in_flight.dec(self.spec.name)
            if not self._room.is_set() and self._room_to_fetch() > 0:
                self._room.set()

    def _record(
        self,
        msg: Msg,
        event_id: str,
        attempt: int,
        action: Action,
        outcome: AttemptOutcome | None = None,
        delay: float | None = None,
        reason: str = "",
    ) -> None:
        if self._on_attempt is not None:
            record = AttemptRecord(
                self.spec.name, msg.subject, event_id, attempt, action, outcome, delay, reason
            )
            self._on_attempt(record)


def _event_id(msg: Msg) -> str:
    try:
        return contracts.decode_event(msg.data).event_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def _port_of(subject: str) -> str:
    try:
        return subjects.parse_event_subject(subject)[1]
    except ValueError:
        return ""


async def _first(*aws: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of several coroutines finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
