"""One port of the farm: its modem, its SIM's policy, the jobs it sends and what it receives.

How a job ends (sent, back to the queue, failed, `unknown`, given back) is decided in
`send_path`; this worker gives it the modem, the bookkeeping and the bus. What the port
receives is made durable by `receiving`, its delivery reports published by
`delivery_reports`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from smsgate import contracts
from smsgate.backoff import doubled
from smsgate.config import AgentConfig, AgentPort
from smsgate.contracts import MessageState

from smsgate_agent import reports
from smsgate_agent.backlog import Backlog
from smsgate_agent.delivery_reports import DeliveryReports, ledger_settings
from smsgate_agent.ledger import KvStore, Ledger
from smsgate_agent.link import ModemInfo, ModemTimings
from smsgate_agent.liveness import Claim
from smsgate_agent.metrics import PortReading
from smsgate_agent.modem import Modem
from smsgate_agent.policy import PortPolicy, effective
from smsgate_agent.port_records import PortIdentity, message_status, send_result, sending_record
from smsgate_agent.port_state import PortStateWriter
from smsgate_agent.publisher import Publisher
from smsgate_agent.receiving import Receiving
from smsgate_agent.send_path import (
    AfterSend,
    JobHandle,
    KeepAlive,
    SendPath,
    any_part_sent,
)
from smsgate_agent.sending import PartHook, SendOutcome
from smsgate_agent.shared_jobs import IdlePorts
from smsgate_agent.spool import Spool
from smsgate_agent.startup import Opener

log = logging.getLogger("smsgate.agent")


class PortWorker:
    """Takes jobs when idle and healthy, sends them, reports every outcome once."""

    def __init__(
        self,
        agent: AgentConfig,
        port: AgentPort,
        publisher: Publisher,
        *,
        backlog: Backlog | None = None,
        idle_ports: IdlePorts | None = None,
        handling: set[str] | None = None,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
        opener: Opener | None = None,
        device: Callable[[], str | None] | None = None,
    ) -> None:
        """`backlog`: what the agent owes the bus (shared by its ports; see backlog.py);
        `opener` opens the modem's device (an identity-bound port's finds it first);
        `device` says which device it holds now, for the port state."""
        self.agent = agent
        self.cfg = port
        self.name = port.name
        self.number = port.gateway_number  # the gateway API's port number
        self.publisher = publisher
        self.backlog = (
            backlog if backlog is not None else Backlog(publisher, Spool(spool_path(agent)))
        )
        self.clock = clock
        self.policy = PortPolicy(effective(agent.policy, port.policy))
        self.receiving = Receiving(
            self.name,
            self.number,
            publisher,
            backlog=self.backlog,
            imsi=lambda: self.modem.info.imsi,
            reassembly_timeout=agent.reassembly_timeout,
            clock=clock,
        )
        if ledger is None:  # the agent shares one between its ports
            store = KvStore(publisher.buckets.reports, publisher.js, publisher.acks)
            ledger = Ledger(store, publisher, ledger_settings(agent))
        self.delivery_reports = DeliveryReports(ledger, self.sim)
        self.modem = Modem(
            port,
            command_timeout=agent.command_timeout,
            send_timeout=agent.send_timeout,
            # The one retry of a +CMS error: per part, in the modem's send (sending.py).
            timings=ModemTimings(send_retries=agent.retries),
            on_inbound=self.receiving.on_inbound,  # returns once the SMS is durable
            on_report=self.delivery_reports.on_report,
            on_state=self._on_modem_state,
            opener=opener,
        )
        self._device = device
        self.send_path = SendPath(
            self,
            publisher,
            name=self.name,
            agent=publisher.agent,
            boot=publisher.boot,
            resend_interrupted=agent.resend_interrupted,
            held_delay=agent.ack_wait,
            holder_timeout=agent.holder_timeout,
            handling=handling,
            clock=clock,
            connection=lambda: int(publisher.nc.stats["reconnects"]),
        )
        self.inbox: deque[tuple[Msg, bool]] = deque()  # (job, pinned): one at a time
        # Jobs pinned to this port, fetched while it was busy: sent first, in order
        # (pinned_jobs.py fills it, and calls `on_pinned_taken` when one is taken).
        self.pinned: deque[Msg] = deque()
        self.on_pinned_taken: Callable[[PortWorker], None] = lambda port: None
        # Jobs pinned to this port still in the stream (waiting, or in hand), as the agent
        # last counted them: a backlog a drained or parked port holds shows in its queue.
        self.pinned_backlog = 0
        self.idle = asyncio.Event()  # set while the port waits for a job
        self.idle_ports = idle_ports if idle_ports is not None else IdlePorts()
        self._waiter: asyncio.Future[None] | None = None  # the send loop's pause
        self.disabled = not port.enabled
        self.draining = False
        self.busy = False
        self.sent = self.failed = self.unknown = 0
        self.last_error: str | None = None
        self.state_writer = PortStateWriter(
            self.name, publisher, self.status, lambda: self.modem.info.imsi, self.state
        )
        self._background: set[asyncio.Task[None]] = set()
        self._recorded_at = 0.0  # when the last send's outcome was counted

    @property
    def received(self) -> int:
        return self.receiving.received

    def sim(self) -> reports.Sim:
        """This port and the SIM in it now, as the report ledger files them."""
        info = self.modem.info
        return reports.Sim(
            port=self.name, port_number=self.number, imsi=info.imsi, iccid=info.iccid
        )

    # --- availability -------------------------------------------------------------------

    def status(self) -> contracts.PortStatus:
        if self.disabled or (self.draining and not self.busy):
            return contracts.PortStatus.DISABLED
        if not self.modem.ready:
            return contracts.PortStatus.DOWN
        if self.busy:
            return contracts.PortStatus.BUSY
        if self.policy.blocked(self.clock()):
            return contracts.PortStatus.PARKED
        return contracts.PortStatus.READY

    def can_take(self) -> bool:
        return not self.inbox and not self.pinned and self.status() == contracts.PortStatus.READY

    def state(self) -> contracts.PortState:
        info: ModemInfo = self.modem.info
        blocked = self.policy.blocked(self.clock())
        return contracts.PortState(
            port=self.name,
            port_number=self.number,
            agent=self.publisher.agent,
            device=(self._device() if self._device else None) or self.cfg.device,
            status=self.status(),
            imsi=info.imsi,
            iccid=info.iccid,
            imei=info.imei,
            operator=info.operator,
            signal=info.signal,
            registration=info.registration,
            sent=self.sent,
            failed=self.failed,
            unknown=self.unknown,
            received=self.received,
            sent_today=self.policy.sent_today,
            daily_cap=self.policy.policy.daily_cap,
            queue=self.pinned_backlog + sum(1 for _, pinned in self.inbox if not pinned),
            # The error that parked a port stays its last error: the status says parked.
            last_error=info.last_error or self.last_error or blocked,
            updated=contracts.utcnow(),
            heartbeat_interval=self.agent.heartbeat,
            sms_mode=info.sms_mode,
            boot=self.publisher.boot,
        )

    def reading(self) -> PortReading:
        """The port as a metrics scrape sees it."""
        link = self.modem.link
        return PortReading(
            state=self.state(),
            reports=self.delivery_reports.published,
            at_errors=link.error_replies,
            restarts=link.restarts,
        )

    async def publish_state(self, *, force: bool = False) -> None:
        await self.state_writer.publish(force=force)

    async def beat_state(self, *, refresh: bool = False) -> None:
        """The heartbeat's write: only a state that changed since (or `refresh`)."""
        await self.state_writer.beat(refresh=refresh)

    @property
    def state_dirty(self) -> bool:
        return self.state_writer.dirty

    async def flush_state(self) -> None:
        await self.state_writer.flush()

    def _on_modem_state(self, info: ModemInfo) -> None:
        self.poke()

    # --- the send loop ------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Wait until this port can send, announce it idle, send what arrives.

        One future is the whole wait: `offer()` (a job), `poke()` (availability changed or
        the agent stops) or a timer resolves it, so waiting costs no task per message.
        """
        while not stopping.is_set():
            await self.publish_state()
            wait = self.policy.wait(self.clock())
            if wait > 0:
                await self._pause(wait)
                continue
            if not self.inbox:
                if self.status() != contracts.PortStatus.READY:
                    self._set_idle(False)
                    await self._pause(1.0)
                    continue
                if self.pinned:
                    self._set_idle(False)
                    job = self.pinned.popleft()
                    self.on_pinned_taken(self)
                    await self.handle(job, pinned=True)
                    continue
                self._set_idle(True)
                await self._pause(None)
                continue
            self._set_idle(False)
            msg, pinned = self.inbox.popleft()
            await self.handle(msg, pinned=pinned)
        self._set_idle(False)
        # Jobs handed to us but not started go back at once for another port (or run).
        while self.inbox:
            msg, _ = self.inbox.popleft()
            await msg.nak()
        while self.pinned:
            await self.pinned.popleft().nak()

    def offer(self, msg: Msg, *, pinned: bool) -> None:
        """Hand this idle port a job (the agent's fetchers call this)."""
        self._set_idle(False)
        self.inbox.append((msg, pinned))
        self.poke()

    def poke(self) -> None:
        """Wake the send loop to look again: a job came, availability changed, or stop."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _pause(self, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(seconds, self.poke) if seconds is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    def _set_idle(self, idle: bool) -> None:
        if idle:
            self.idle.set()
            self.idle_ports.add(self)
        elif self.idle.is_set():
            self.idle.clear()
            self.idle_ports.discard(self)

    async def handle(self, msg: Msg, *, pinned: bool) -> None:
        """Send one job and make sure it ends in exactly one result (or goes back)."""
        try:
            job = contracts.decode(msg.data, contracts.SendJob)
        except msgspec.MsgspecError as exc:
            await self.dead_letter(msg, f"malformed job: {exc}")
            return
        if not await self.send_path.admit(msg, job):
            return
        self.busy = True
        await self.publish_state()
        progress = KeepAlive(msg, self.agent.ack_wait / 3)
        try:
            await self.send_path.send(msg, job, pinned=pinned, deliveries=deliveries(msg))
        finally:
            self.send_path.release(job)
            progress.cancel()
            self.busy = False
            await self.publish_state()

    # --- what the send path asks of its port (send_path.SendPort) -------------------------

    async def settle_pending(self, job: contracts.SendJob, handle: JobHandle) -> bool:
        """Settle this agent's result of the job if it waits in the spool (its job came
        back); whether one waited."""
        return await self.backlog.settle_pending(job.id, handle)

    async def drop_claim(self, job: contracts.SendJob, token: str) -> None:
        """Drop a claim whose message reached no network, now or once the bus is back."""
        await self.backlog.unclaim(job.id, token)

    async def attempt(self, job: contracts.SendJob, mark: PartHook) -> SendOutcome:
        """The modem's send. A +CMS error was retried there already, per part, `agent.retries`
        times with back-off 1, 2, 4 s; only a modem that did not answer at all (port down or
        lost, no prompt) is given more tries here, while nothing reached a network."""
        outcome: SendOutcome | None = None
        for attempt in range(self.agent.retries + 1):
            outcome = await self.modem.send(
                job.to, job.text, status_report=job.status_report, on_part=mark
            )
            if outcome.ok or not outcome.temporary or any_part_sent(outcome):
                break
            if outcome.code is not None:  # the modem refused it: its own retries are spent
                break
            if attempt < self.agent.retries:
                await asyncio.sleep(doubled(1.0, attempt, 30.0))
        assert outcome is not None
        return outcome

    def record(self, job: contracts.SendJob, outcome: SendOutcome, after: AfterSend) -> None:
        now = self._recorded_at = self.clock()  # also the send time the ledger records
        if outcome.ok:
            self.policy.record_sent(now, len(outcome.parts))
            self.sent += 1
            self.last_error = None
            return
        self.last_error = outcome.error
        if self.policy.record_failed(now):
            log.warning("%s: parked after repeated failures (%s)", self.name, outcome.error)
        if after is AfterSend.FAIL:
            self.failed += 1
        elif after is AfterSend.UNKNOWN:
            self.unknown += 1

    async def after_sent(self, job: contracts.SendJob, outcome: SendOutcome) -> None:
        if job.status_report:
            await self.delivery_reports.expect(job, outcome.parts, self._recorded_at)

    def identity(self) -> PortIdentity:
        return PortIdentity(self.name, self.number, self.publisher.agent, self.modem.info.imsi)

    async def requeued(self, job: contracts.SendJob) -> None:
        await self.publisher.put_status(message_status(job, self.identity(), MessageState.QUEUED))

    def sending(self, job: contracts.SendJob) -> None:
        at = self.identity()
        status = message_status(job, at, MessageState.SENDING)
        # The history's step besides; sent at once where the ack inbox can frame them.
        for step in self.publisher.sending(status, sending_record(job, at)):
            task = asyncio.get_running_loop().create_task(step)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """A job no port can ever read: kept in the dead letters, never handed out again."""
        await self.publisher.dead_letter(msg.subject, reason, msg.data)
        await msg.term()

    async def fail_unavailable(self, msg: Msg, job: contracts.SendJob) -> None:
        await self.finish(msg, job, contracts.SendStatus.FAILED, "port unavailable", [])

    async def finish(
        self,
        handle: JobHandle,
        job: contracts.SendJob,
        status: contracts.SendStatus,
        reason: str | None,
        parts: list[contracts.PartResult],
        claim: Claim | None = None,
    ) -> bool:
        """Settle the job's result; False when another result was decided before it."""
        result = send_result(job, self.identity(), status, reason, parts)
        # The outcome is known and only here: kept on this host's disk until the bus takes
        # it, however long the bus is away. Losing it would turn a sent message into an
        # `unknown` one.
        winner = await self.backlog.result(
            result,
            created=job.created,
            reply_to=job.reply_to,
            handle=handle,
            digest=contracts.text_digest(job.text),
            claim=claim,
        )
        if winner is not None and winner != result:
            log.error(
                "%s message %s: %s came after %s %s was decided; not published",
                self.name,
                job.id,
                status.value,
                winner.status.value,
                winner.reason or "",
            )
            return False
        log.info(
            "%s message %s to %s: %s%s",
            self.name,
            job.id,
            job.to,
            status.value,
            f" ({reason})" if reason else "",
            extra={"message_id": job.id, "port": self.name, "event": "result"},
        )
        return True

    # --- receiving ----------------------------------------------------------------------

    async def restore_parts(self, keys: list[str] | None = None) -> None:
        await self.receiving.restore_parts(keys)

    async def expire_parts(self) -> None:
        await self.receiving.expire_parts()


def deliveries(msg: Msg) -> int:
    """How many times JetStream has handed the job out, this time included (1 for a
    message that carries no JetStream metadata)."""
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream delivery
        return 1


def spool_path(agent: AgentConfig) -> Path:
    """Where an agent keeps what it owes the bus (see spool.py)."""
    return Path(agent.state_dir) / f"spool-{agent.name or 'agent'}.sqlite"
