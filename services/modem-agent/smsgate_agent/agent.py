"""The modem agent: this host's ports joined to the farm over NATS.

Each idle, healthy port takes work: first the jobs pinned to it (its queue, filled from
the agent's one consumer: pinned_jobs.py), then `sms.send.any`, pulled for exactly the
ports that are idle (shared_jobs.py), so a busy port never holds a shared job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ServiceUnavailableError
from smsgate import bus, contracts, gc_tuning, metrics, port_liveness, subjects
from smsgate.acks import AckPublisher
from smsgate.backoff import Backoff
from smsgate.cancelling import cancel_and_wait
from smsgate.config import Config

from smsgate_agent import consumers, discovery
from smsgate_agent.backlog import Backlog
from smsgate_agent.delivery_reports import ledger_settings
from smsgate_agent.ledger import KvStore, Ledger
from smsgate_agent.metrics import render_ports
from smsgate_agent.modem import open_device
from smsgate_agent.pinned_jobs import PinnedWork
from smsgate_agent.port import PortWorker, spool_path
from smsgate_agent.port_state import REFRESH_BEATS
from smsgate_agent.publisher import Publisher
from smsgate_agent.receiving import inbound_part_keys
from smsgate_agent.shared_jobs import IdlePorts, SharedWork
from smsgate_agent.spool import Spool

log = logging.getLogger("smsgate.agent")

STATE_FLUSH = 0.5  # seconds: how stale a port's busy/ready in the KV may be


class Agent:
    def __init__(self, config: Config, *, settle_heap: bool = False) -> None:
        """`settle_heap`: the process is this agent's alone (`smsgate agent`): tune its
        garbage collector once the ports are up (see smsgate.gc_tuning)."""
        if not config.agent.name:
            raise ValueError("agent.name is required")
        subjects.send_agent_consumer(config.agent.name)  # a name JetStream takes, or a clear error
        self.config = config
        self.name = config.agent.name
        self.settle_heap = settle_heap
        self.stopping = asyncio.Event()
        self.workers: list[PortWorker] = []
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._idle = IdlePorts()
        self._handling: set[str] = set()  # ids of the jobs the ports hold now
        # When the server last answered: no job is taken before it has (after a partition
        # the way back to this host may lag the way out, or be dead without a word).
        self._heard_at = -float("inf")
        self._deaf = False  # the last lease renewal failed
        self._pinned: PinnedWork | None = None

    def metrics_text(self) -> str:
        """This agent's metrics in the Prometheus text format."""
        return render_ports(worker.reading() for worker in self.workers)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain: finish in-flight sends and exit."""
        nc = await bus.connect_until(
            self.config.nats,
            stop,
            name=f"smsgate-agent-{self.name}",
            buffer_while_away=False,
            write_window=self.config.agent.write_window,  # smsgate.write_window
            lean_reader=True,  # a dozen replies per part: read by slicing
        )
        if nc is None:
            return
        self.nc = nc
        self.js = js = nc.jetstream()
        buckets = await until_answered(lambda: bus.provision(js, self.config.nats), "streams")
        acks = AckPublisher(nc)
        await acks.start()
        publisher = Publisher(
            nc=nc,
            js=js,
            buckets=buckets,
            agent=self.name,
            acks=acks,
            duplicate_window=self.config.nats.events_duplicate_window,
            settled_ttl=self.config.settled_ttl,
        )
        self.backlog = backlog = Backlog(publisher, Spool(spool_path(self.config.agent)))
        # What an earlier run could not publish goes out before this run claims anything
        # or renews its lease (see liveness.py).
        await self._drain_backlog(stop)
        await self._renew(publisher)
        ledger = Ledger(
            KvStore(buckets.reports, js, acks), publisher, ledger_settings(self.config.agent)
        )
        claims = discovery.DeviceClaims()
        names = [port.name for port in self.config.agent.ports]
        refused = await until_answered(lambda: self._held_elsewhere(publisher, names), "ports")
        for port in self.config.agent.ports:
            if port.name in refused:
                continue
            opener: discovery.IdentityOpener | None = None
            if discovery.bound_by_identity(port):
                # Found wherever its modem answers, at start and after every replug.
                opener = discovery.IdentityOpener(port, claims, open_device=open_device)
            else:
                claims.hold(port.name, port.device)
            worker = PortWorker(
                self.config.agent,
                port,
                publisher,
                backlog=backlog,
                idle_ports=self._idle,
                handling=self._handling,
                opener=opener,
                device=functools.partial(claims.device_of, port.name),
                ledger=ledger,
            )
            self.workers.append(worker)
        background: list[asyncio.Task[Any]] = []
        senders: list[asyncio.Task[None]] = []

        def spawn(coro: Coroutine[Any, Any, None]) -> None:
            background.append(asyncio.create_task(coro))

        await until_answered(
            lambda: self._ensure_consumer(js, subjects.SEND_ANY_CONSUMER, subjects.SEND_ANY),
            subjects.SEND_ANY_CONSUMER,
        )
        shared = SharedWork(
            nc,
            subjects.SEND_STREAM,
            subjects.SEND_ANY_CONSUMER,
            self._idle,
            self.stopping,
            hearing=self.hearing,
        )
        # One consumer for the jobs pinned to every port here (consumers.py).
        pinned = await self._pinned_work(nc, js)
        part_keys = await until_answered(
            lambda: inbound_part_keys(publisher.buckets.inbound_parts), "inbound parts"
        )
        for worker in self.workers:
            await worker.restore_parts(part_keys)
            spawn(worker.modem.run())
            await self._serve_control(nc, worker)
            senders.append(asyncio.create_task(worker.run(self.stopping)))
        if pinned is not None:
            spawn(pinned.run())
        spawn(shared.run())
        spawn(self._heartbeat_loop(publisher))
        spawn(self._sweep_loop(ledger))
        if self.settle_heap:
            gc_tuning.settle()  # the ports' workers, modems and subscriptions live as long as we do
        log.info("agent %s serving %d ports", self.name, len(self.workers))

        await stop.wait()
        log.info("agent %s draining", self.name)
        self.stopping.set()
        for worker in self.workers:
            worker.poke()
        await asyncio.gather(*senders, return_exceptions=True)
        await cancel_and_wait(*background)
        for worker in self.workers:
            await worker.modem.close()
            worker.last_error = "agent stopped"
        # The report ledger's slot entries of settled messages still owed a removal.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await ledger.flush()
        # Final states are best effort: with NATS gone, do not hang the shutdown on them.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                for worker in self.workers:
                    await worker.publish_state(force=True)
        # Every job is settled by now; drain() would wait its full timeout on pull subscriptions.
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        await acks.stop()
        backlog.spool.close()
        await bus.close(nc)

    async def _held_elsewhere(self, publisher: Publisher, names: list[str]) -> set[str]:
        """The port names that a live port on another agent holds: refused here.

        Every state is asked for at once (one after another, 500 ports took seconds of
        round trips to a busy cluster), then the leases of the agents that hold any."""
        acks = publisher.acks
        assert acks is not None
        stream = f"KV_{subjects.PORTS_BUCKET}"
        asked = [await acks.last_message(stream, subjects.PORTS_KV_PREFIX + n) for n in names]
        answers = await asyncio.gather(*asked, return_exceptions=True)
        held: list[contracts.PortState] = []
        for stored in answers:
            if isinstance(stored, BaseException):
                raise stored  # every answer is in: none is left unread
            if stored is None or stored.kv_removed or not stored.data:
                continue
            try:
                state = contracts.decode(stored.data, contracts.PortState)
            except msgspec.MsgspecError:
                continue
            if state.agent != self.name:
                held.append(state)
        leases = {agent: await publisher.lease(agent) for agent in {s.agent for s in held}}
        now = time.time()
        refused = set()
        for state in held:
            if port_liveness.is_live(state, leases[state.agent], now):
                log.error(
                    "port %s refused: it is held by agent %s (%s), heard from %.1fs ago",
                    state.port,
                    state.agent,
                    state.device,
                    now - port_liveness.heard_at(state, leases[state.agent]),
                )
                refused.add(state.port)
        return refused

    # --- work distribution --------------------------------------------------------------

    async def _ensure_consumer(self, js: JetStreamContext, durable: str, subject: str) -> None:
        try:
            await js.consumer_info(subjects.SEND_STREAM, durable)
        except NotFoundError:
            config = consumers.consumer_config(
                durable, [subject], ack_wait=self.config.agent.ack_wait
            )
            await js.add_consumer(subjects.SEND_STREAM, config)

    async def _pinned_work(self, nc: Client, js: JetStreamContext) -> PinnedWork | None:
        """The agent's consumer made to filter its ports' subjects, and its fetcher."""
        ports = [worker.name for worker in self.workers]
        ack_wait = self.config.agent.ack_wait
        name = await until_answered(
            lambda: consumers.reconcile(nc, js, self.name, ports, ack_wait=ack_wait),
            "the pinned jobs' consumer",
        )
        if name is None:
            return None
        self._pinned = pinned = PinnedWork(
            nc,
            subjects.SEND_STREAM,
            name,
            {worker.name: worker for worker in self.workers},
            self.stopping,
            ack_wait=ack_wait,
            hearing=self.hearing,
        )
        for worker in self.workers:
            worker.on_pinned_taken = pinned.taken
        return pinned

    # --- control and heartbeat ----------------------------------------------------------

    async def _serve_control(self, nc: Client, worker: PortWorker) -> None:
        async def on_control(msg: Msg) -> None:
            try:
                command = contracts.decode(msg.data, contracts.PortCommand)
            except msgspec.MsgspecError as exc:
                await msg.respond(
                    contracts.encode(contracts.ControlReply(ok=False, error=str(exc)))
                )
                return
            if command.action == "disable":
                worker.disabled, worker.draining = True, False
            elif command.action == "enable":
                worker.disabled = worker.draining = False
                worker.policy.parked_until = 0.0
            else:
                worker.draining = True
            worker.poke()
            await worker.publish_state()
            log.info("port %s: %s", worker.name, command.action)
            reply = contracts.ControlReply(ok=True, state=worker.state())
            await msg.respond(contracts.encode(reply))

        async def on_ussd(msg: Msg) -> None:
            try:
                request = contracts.decode(msg.data, contracts.UssdRequest)
                text = await worker.modem.ussd(request.code, request.timeout)
                reply = contracts.ControlReply(ok=True, text=text)
            except Exception as exc:
                reply = contracts.ControlReply(ok=False, error=str(exc) or type(exc).__name__)
            await msg.respond(contracts.encode(reply))

        await nc.subscribe(subjects.port_control(worker.name), cb=on_control)
        await nc.subscribe(subjects.ussd(worker.name), cb=on_ussd)

    def hearing(self) -> bool:
        """Whether the server answered within the last three heartbeats."""
        return time.monotonic() - self._heard_at < 3 * self.config.agent.heartbeat

    async def _renew(self, publisher: Publisher) -> None:
        """Renew the lease, an acknowledged write: once the server has answered it (the way
        there and the way back both work), take jobs and publish what waits in the spool.
        A server not heard renews nothing: the lease runs out. Bounded, never hangs."""
        beat = self.config.agent.heartbeat
        lease = contracts.Lease(
            agent=self.name, boot=publisher.boot, renewed=time.time(), lease=self.config.agent.lease
        )
        try:
            async with asyncio.timeout(max(1.0, 2 * beat)):
                await publisher.renew(lease)
        except Exception as exc:
            if not self._deaf:
                reason = str(exc) or type(exc).__name__
                log.warning("server not heard (%s): no new jobs until it answers", reason)
            self._deaf = True
            return
        if self._deaf:
            log.info("server heard again: %d entries in the spool", len(self.backlog))
            for worker in self.workers:
                # What changed while away may not have reached the bucket: the lease
                # now says every state is current, so every state is written again.
                worker.state_writer.forget()
            # What the SIMs kept while the bus was away (reports, parts of long SMS whose
            # handler failed) is read again now, not at the next storage sweep.
            for worker in self.workers:
                worker.modem.inbox.sweep()
        self._deaf = False
        self._heard_at = time.monotonic()
        if len(self.backlog):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(5.0, 4 * beat)):
                    await self.backlog.replay()

    async def _drain_backlog(self, stop: asyncio.Event) -> None:
        """Publish what an earlier run kept in the spool, however long the bus refuses."""
        while len(self.backlog) and not stop.is_set():
            if await self.backlog.replay():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()

    async def _remake_pinned_consumer(self) -> None:
        """The pinned jobs' consumer, found gone (deleted by hand, the server's state
        lost), made again once the server answers; never taken from another agent."""
        pinned = self._pinned
        if pinned is None or not pinned.lost or self.js is None or not self.hearing():
            return
        ports = [worker.name for worker in self.workers]
        try:
            await consumers.ensure(
                self.js, pinned.consumer, ports, ack_wait=self.config.agent.ack_wait
            )
            pinned.lost = False
        except Exception as exc:
            log.warning("making consumer %s again failed: %s", pinned.consumer, exc)

    async def _count_pinned(self) -> None:
        """Each port's pinned jobs in the stream, from one stream info for the whole farm."""
        if self.js is None:
            return
        try:
            info = await self.js.stream_info(
                subjects.SEND_STREAM, subjects_filter=subjects.SEND_PINNED_WILDCARD
            )
        except Exception as exc:  # NATS away: keep the last count, the beat goes on
            log.debug("counting pinned jobs failed: %s", exc)
            return
        counts = info.state.subjects or {}
        for worker in self.workers:
            worker.pinned_backlog = counts.get(subjects.send_port(worker.name), 0)

    async def _heartbeat_loop(self, publisher: Publisher) -> None:
        """Each heartbeat renews the lease, an answer from the server that the spool and
        taking work wait on, and that keeps every port's state standing for the readers
        (smsgate.port_liveness); a state is written only when it changed, or once every
        REFRESH_BEATS beats (a slice of the ports each beat). In between, the busy/ready
        flips as they come."""
        beat = self.config.agent.heartbeat
        next_beat = 0.0
        beats = 0
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            if loop.time() >= next_beat:
                next_beat = loop.time() + beat
                await self._renew(publisher)
                await self._remake_pinned_consumer()
                await self._count_pinned()
                beats += 1
                for index, worker in enumerate(self.workers):
                    refresh = (index + beats) % REFRESH_BEATS == 0
                    try:
                        async with asyncio.timeout(max(1.0, beat)):
                            await worker.beat_state(refresh=refresh)
                            await worker.expire_parts()
                    except Exception as exc:
                        log.warning(
                            "%s: heartbeat: %s", worker.name, str(exc) or type(exc).__name__
                        )
            else:
                for worker in self.workers:
                    if worker.state_dirty:
                        await worker.flush_state()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(STATE_FLUSH, beat)):
                    await self.stopping.wait()

    async def _sweep_loop(self, ledger: Ledger) -> None:
        """Reports that are due (`expired`) or waited in vain (`unmatched`), farm-wide."""
        while not self.stopping.is_set():
            try:
                await ledger.sweep()
            except Exception as exc:
                log.warning("report sweep failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.agent.report_sweep):
                    await self.stopping.wait()


T = TypeVar("T")
# The server did not answer in time: a cluster busy with many agents starting at once.
# TimeoutError: no ack or answer on the shared inbox (smsgate.acks) in time.
UNANSWERED = (TimeoutError, NatsTimeoutError, NoRespondersError, ServiceUnavailableError)


async def until_answered(step: Callable[[], Awaitable[T]], what: str) -> T:
    """A start-up step against the JetStream API, tried again while the server does not
    answer in time (twenty agents of 500 ports starting at once keep a 3-node cluster
    busy for longer than an API timeout); any other error is the caller's."""
    backoff = Backoff(1.0, 10.0)
    while True:
        try:
            return await step()
        except UNANSWERED as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("start-up, %s: the server did not answer (%s); trying again", what, reason)
            await backoff.sleep()


async def run_agent(config: Config, stop: asyncio.Event, *, settle_heap: bool = False) -> None:
    agent = Agent(config, settle_heap=settle_heap)
    listen = config.agent.metrics_listen
    async with metrics.serving(listen, "agent.metrics_listen", [agent.metrics_text]):
        await agent.run(stop)
