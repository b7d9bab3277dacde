"""One port of the farm: its modem, its SIM's policy, the jobs it sends and what it receives."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import APIError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from smsgate import contracts
from smsgate.config import AgentConfig, AgentPort
from smsgate.contracts import MessageState, MessageStatus
from smsgate.pdu import Deliver, StatusReport

from smsgate_agent import reports
from smsgate_agent.ledger import KvStore, Ledger, LedgerSettings
from smsgate_agent.modem import Modem, ModemInfo, PartHook, SendOutcome
from smsgate_agent.policy import PortPolicy, effective
from smsgate_agent.publisher import WRONG_LAST_SEQUENCE, Publisher
from smsgate_agent.reassembly import InboundPart, Joined, Reassembler

log = logging.getLogger("smsgate.agent")

FINAL = {
    contracts.MessageState.SENT,
    contracts.MessageState.FAILED,
    contracts.MessageState.DELIVERED,
    contracts.MessageState.UNDELIVERED,
}
RESULT_RETRY_MAX = 5.0  # seconds between attempts to publish a result while NATS is away


# Busy and ready alternate with every message: not an event, and written to the KV by the
# agent's state loop (at most every STATE_FLUSH seconds), not twice per message.
ROUTINE = {contracts.PortStatus.BUSY, contracts.PortStatus.READY}


@dataclass
class IdlePorts:
    """The agent's ports that wait for shared work, in the order they became idle."""

    ports: dict[str, PortWorker] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, worker: PortWorker) -> None:
        self.ports[worker.name] = worker
        self.wake.set()

    def discard(self, worker: PortWorker) -> None:
        self.ports.pop(worker.name, None)

    def take(self) -> PortWorker | None:
        """The port idle longest that can still take a job; ports that cannot are dropped."""
        while self.ports:
            worker = self.ports.pop(next(iter(self.ports)))
            if worker.can_take():
                return worker
        return None


class PortWorker:
    """Takes jobs when idle and healthy, sends them, reports every outcome once."""

    def __init__(
        self,
        agent: AgentConfig,
        port: AgentPort,
        publisher: Publisher,
        *,
        idle_ports: IdlePorts | None = None,
        handling: set[str] | None = None,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.cfg = port
        self.name = port.name
        self.number = port.gateway_number  # the gateway API's port number
        self.publisher = publisher
        self.clock = clock
        self.policy = PortPolicy(effective(agent.policy, port.policy))
        self.modem = Modem(
            port,
            command_timeout=agent.command_timeout,
            send_timeout=agent.send_timeout,
            on_inbound=self._on_inbound,
            on_report=self._on_report,
            on_state=self._on_modem_state,
        )
        self.inbox: deque[tuple[Msg, bool]] = deque()  # (job, pinned): one at a time
        self.idle = asyncio.Event()  # set while the port waits for a job
        self.idle_ports = idle_ports if idle_ports is not None else IdlePorts()
        self._waiter: asyncio.Future[None] | None = None  # the send loop's pause
        # Ids of the jobs this agent's ports hold now (shared by the agent's workers).
        self.handling = handling if handling is not None else set()
        self.disabled = not port.enabled
        self.draining = False
        self.busy = False
        self.sent = self.failed = self.received = 0
        self.last_error: str | None = None
        self.reassembler = Reassembler(timeout=agent.reassembly_timeout)
        # What every sent part awaits lives on the bus, shared by the agent's ports.
        if ledger is None:
            store = KvStore(publisher.buckets.reports, publisher.js, publisher.acks)
            ledger = Ledger(store, publisher, ledger_settings(agent))
        self.ledger = ledger
        self._last_status: contracts.PortStatus | None = None
        self._last_imsi: str | None = None
        self.state_dirty = False  # a routine change (busy/ready) not yet in the KV
        self._background: set[asyncio.Task[None]] = set()

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
        return not self.inbox and self.status() == contracts.PortStatus.READY

    def state(self) -> contracts.PortState:
        info: ModemInfo = self.modem.info
        blocked = self.policy.blocked(self.clock())
        return contracts.PortState(
            port=self.name,
            port_number=self.number,
            agent=self.publisher.agent,
            device=self.cfg.device,
            status=self.status(),
            imsi=info.imsi,
            iccid=info.iccid,
            imei=info.imei,
            operator=info.operator,
            signal=info.signal,
            registration=info.registration,
            sent=self.sent,
            failed=self.failed,
            received=self.received,
            sent_today=self.policy.sent_today,
            daily_cap=self.policy.policy.daily_cap,
            queue=len(self.inbox),
            last_error=blocked or info.last_error or self.last_error,
            updated=contracts.utcnow(),
            heartbeat_interval=self.agent.heartbeat,
        )

    async def publish_state(self, *, force: bool = False) -> None:
        """Write the port's state to the KV when it changed; a change becomes a port event.

        Busy/ready flips only mark the state dirty: `flush_state` writes it soon after.
        """
        status = self.status()
        imsi = self.modem.info.imsi
        change = None
        if status != self._last_status:
            if self._last_status in ROUTINE and status in ROUTINE:
                self.state_dirty = True
            else:
                change = status.value
        elif imsi != self._last_imsi and self._last_imsi is not None:
            change = "sim changed"
        if change is None and not force:
            return
        state = self.state()
        self._last_status, self._last_imsi = state.status, state.imsi or self._last_imsi
        self.state_dirty = False
        try:
            await self.publisher.port_state(state)
            if change is not None:
                await self.publisher.event_nowait(
                    contracts.PortEvent(
                        event_id=f"{self.name}:{state.updated.isoformat()}:{change}",
                        port=self.name,
                        port_number=state.port_number,
                        imsi=state.imsi,
                        time=state.updated,
                        change=change,
                        state=state,
                    )
                )
        except Exception as exc:
            log.warning("%s: port state not published: %s", self.name, exc)

    async def flush_state(self) -> None:
        """Write a busy/ready flip that is still so (a port busy again is not rewritten)."""
        self.state_dirty = False
        if self.status() != self._last_status:
            await self.publish_state(force=True)

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
                self._set_idle(True)
                await self._pause(None)
                continue
            self._set_idle(False)
            msg, pinned = self.inbox.popleft()
            await self.handle(msg, pinned=pinned)
        self._set_idle(False)
        # Jobs handed to us but not started go back at once for another port.
        while self.inbox:
            msg, _ = self.inbox.popleft()
            await msg.nak()

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
            await self.publisher.dead_letter(msg.subject, f"malformed job: {exc}", msg.data)
            await msg.term()
            return
        if job.id in self.handling:
            # Handed out again (NATS was away for longer than ack_wait) while another port of
            # this agent holds it: that port settles it. Calling it `interrupted` here would
            # override the result it holds.
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.agent.ack_wait)
            return
        self.handling.add(job.id)
        self.busy = True
        await self.publish_state()
        progress = _KeepAlive(msg, self.agent.ack_wait / 3)
        try:
            await self._send(msg, job, pinned=pinned)
        except Exception as exc:
            # NATS failed before the outcome was settled (status unreadable, the marker not
            # written): the job comes back after ack_wait and the marker decides its fate.
            log.warning("%s: message %s left for redelivery: %s", self.name, job.id, exc)
        finally:
            self.handling.discard(job.id)
            progress.cancel()
            self.busy = False
            await self.publish_state()

    async def _send(self, msg: Msg, job: contracts.SendJob, *, pinned: bool) -> None:
        """Send under an at-most-once claim: the job's key in `sms_sending`, created (never
        overwritten) before the first part goes out. A claim that exists already means
        the message was handed to a modem before (an agent died mid-send, or its ack was
        lost): it is settled by its status, never sent a second time by surprise."""
        token = f"{self.publisher.agent}/{self.name}/{contracts.new_id()}"  # this handling's
        try:
            await self._send_claimed(msg, job, token, pinned=pinned, claim=True)
        except APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise
            if await self.publisher.reclaim(job.id, token):  # only a released claim was there
                await self._send_claimed(msg, job, token, pinned=pinned, claim=False, holding=True)
            else:
                await self._claimed_before(msg, job, pinned=pinned)

    async def _claimed_before(self, msg: Msg, job: contracts.SendJob, *, pinned: bool) -> None:
        previous = await self.publisher.status(job.id)
        if previous is not None and previous.state in FINAL:
            await msg.ack()  # done before; the ack was lost
            return
        if not self.agent.resend_interrupted:
            await self._finish(msg, job, contracts.SendStatus.FAILED, "interrupted", [])
            return
        log.warning("%s: re-sending interrupted message %s", self.name, job.id)
        await self._send_claimed(msg, job, "", pinned=pinned, claim=False)

    async def _send_claimed(
        self,
        msg: Msg,
        job: contracts.SendJob,
        token: str,
        *,
        pinned: bool,
        claim: bool,
        holding: bool = False,
    ) -> None:
        """`claim`: create the claim (holding `token`) at the first part; `holding`: the
        claim with `token` is ours already."""
        claim_ack: Awaitable[object] | None = None

        async def mark(sequence: int) -> Awaitable[object] | None:
            # The claim is sent before the first AT+CMGS; its ack is awaited at the prompt.
            nonlocal claim_ack
            if sequence != 1 or claim_ack is not None or not claim:
                return None
            claim_ack = await self.publisher.claim(job.id, token)
            if isinstance(claim_ack, asyncio.Future):
                claim_ack.add_done_callback(lambda done: self._sending(done, job))
            return claim_ack

        try:
            outcome = await self._attempts(job, mark)
            if claim_ack is not None:
                await claim_ack  # a part refused before the prompt: the claim still decides
        except Exception as exc:
            if not _unconfirmed(claim_ack, exc):
                raise
            # The claim's ack never came (NATS went away): the prompt was cancelled and
            # nothing was sent, so the claim must not make a redelivery `interrupted`.
            log.warning("%s: claim of %s unconfirmed (%s); nothing sent", self.name, job.id, exc)
            await self._retry_until_done(lambda: self.publisher.unclaim(job.id, token), job)
            with contextlib.suppress(Exception):
                await msg.nak()
            return

        now = self.clock()
        if outcome.ok:
            self.policy.record_sent(now, len(outcome.parts))
            self.sent += 1
            self.last_error = None
            if job.status_report:
                # On record before the result: a report found nothing, so nothing is lost.
                await self._await_report(job, outcome.parts, now)
            await self._finish(msg, job, contracts.SendStatus.SENT, None, outcome.parts)
            return
        self.last_error = outcome.error
        if self.policy.record_failed(now):
            log.warning("%s: parked after repeated failures (%s)", self.name, outcome.error)
        if outcome.temporary and not _any_part_sent(outcome) and not pinned:
            # Nothing reached the network: another port may do better, under a new claim.
            if claim_ack is not None or holding:
                await self.publisher.unclaim(job.id, token)
            await self.publisher.put_status(self._status(job, MessageState.QUEUED))
            await msg.nak(delay=1.0)
            return
        self.failed += 1
        await self._finish(msg, job, contracts.SendStatus.FAILED, outcome.error, outcome.parts)

    async def _attempts(self, job: contracts.SendJob, mark: PartHook) -> SendOutcome:
        """The modem's send, tried again on the same port while nothing reached a network."""
        outcome: SendOutcome | None = None
        for attempt in range(self.agent.retries + 1):
            outcome = await self.modem.send(
                job.to, job.text, status_report=job.status_report, on_part=mark
            )
            if outcome.ok or not outcome.temporary or _any_part_sent(outcome):
                break
            if attempt < self.agent.retries:
                await asyncio.sleep(min(2.0**attempt, 30.0))
        assert outcome is not None
        return outcome

    async def _retry_until_done(
        self, step: Callable[[], Awaitable[None]], job: contracts.SendJob
    ) -> None:
        """Keep at a bus write that must happen, however long NATS is away."""
        delay = 0.5
        while True:
            try:
                await step()
                return
            except Exception as exc:
                log.warning("%s: %s not published yet (%s); retrying", self.name, job.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESULT_RETRY_MAX)

    def _sending(self, claim: asyncio.Future[object], job: contracts.SendJob) -> None:
        """Once the claim holds, show the message `sending` (no one waits for that write)."""
        if claim.cancelled() or claim.exception() is not None:
            return
        task = asyncio.get_running_loop().create_task(
            self.publisher.status_nowait(self._status(job, MessageState.SENDING))
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def fail_unavailable(self, msg: Msg, job: contracts.SendJob) -> None:
        await self._finish(msg, job, contracts.SendStatus.FAILED, "port unavailable", [])

    async def _finish(
        self,
        msg: Msg,
        job: contracts.SendJob,
        status: contracts.SendStatus,
        reason: str | None,
        parts: list[contracts.PartResult],
    ) -> None:
        result = contracts.SendResult(
            event_id=f"{job.id}:result",
            port=self.name,
            port_number=self.number,
            imsi=self.modem.info.imsi,
            time=contracts.utcnow(),
            id=job.id,
            caller_id=job.caller_id,
            to=job.to,
            status=status,
            reason=reason,
            parts=parts,
            user=job.user,
        )
        # The outcome is known and only here: keep at it until NATS takes it, however long
        # NATS is away. Giving up would turn a sent message into an `interrupted` one.
        await self._retry_until_done(
            lambda: self.publisher.result(result, created=job.created, reply_to=job.reply_to),
            job,
        )
        await msg.ack()
        log.info(
            "%s message %s to %s: %s%s",
            self.name,
            job.id,
            job.to,
            status.value,
            f" ({reason})" if reason else "",
            extra={"message_id": job.id, "port": self.name, "event": "result"},
        )

    def _status(self, job: contracts.SendJob, state: contracts.MessageState) -> MessageStatus:
        return MessageStatus(
            id=job.id,
            to=job.to,
            state=state,
            port=self.name,
            agent=self.publisher.agent,
            caller_id=job.caller_id,
            user=job.user,
            created=job.created,
            updated=contracts.utcnow(),
        )

    # --- receiving ----------------------------------------------------------------------

    async def restore_parts(self, keys: list[str] | None = None) -> None:
        """Reload the parts of unfinished inbound messages kept across a restart.

        `keys`: the bucket's keys, listed once by the agent for all its ports (each
        listing costs the KV stream a consumer, and a stream takes 1000 at most).
        """
        kv = self.publisher.buckets.inbound_parts
        if keys is None:
            keys = await inbound_part_keys(kv)
        for key in keys:
            if not key.startswith(f"{self.name}."):
                continue
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                continue
            if entry.value:
                self.reassembler.add(msgspec.json.decode(entry.value, type=InboundPart))

    async def _on_inbound(self, deliver: Deliver) -> None:
        """Called by the modem; returns only once the SMS is durable on the bus."""
        concat = deliver.concat
        part = InboundPart(
            sender=deliver.sender,
            text=deliver.text,
            smsc_time=deliver.timestamp,
            smsc=deliver.smsc,
            reference=concat.reference if concat else 0,
            total=concat.total if concat else 1,
            sequence=concat.sequence if concat else 1,
            received=self.clock(),
        )
        if part.total > 1:
            await self.publisher.buckets.inbound_parts.put(
                _part_key(self.name, part), msgspec.json.encode(part)
            )
        joined = self.reassembler.add(part)
        if joined is not None:
            await self._publish_inbound(joined)

    async def expire_parts(self) -> None:
        for joined in self.reassembler.expire(self.clock()):
            await self._publish_inbound(joined)

    async def _publish_inbound(self, joined: Joined) -> None:
        first = joined.first
        digest = hashlib.sha256(
            f"{self.name}|{first.sender}|{first.smsc_time.isoformat()}|{first.reference}|"
            f"{joined.text}".encode()
        ).hexdigest()[:20]
        await self.publisher.event(
            contracts.InboundSms(
                event_id=f"{digest}:inbound",
                port=self.name,
                port_number=self.number,
                imsi=self.modem.info.imsi,
                time=contracts.utcnow(),
                id=digest,
                sender=first.sender,
                text=joined.text,
                smsc_time=first.smsc_time,
                smsc=first.smsc,
                parts=len(joined.parts),
                complete=joined.complete,
            )
        )
        self.received += 1
        if first.total > 1:
            for part in joined.parts:
                with contextlib.suppress(KeyNotFoundError):
                    await self.publisher.buckets.inbound_parts.delete(_part_key(self.name, part))

    # --- reports ------------------------------------------------------------------------

    def sim(self) -> reports.Sim:
        info = self.modem.info
        return reports.Sim(
            port=self.name, port_number=self.number, imsi=info.imsi, iccid=info.iccid
        )

    async def _await_report(
        self, job: contracts.SendJob, parts: list[contracts.PartResult], now: float
    ) -> None:
        sent = dt.datetime.fromtimestamp(now, dt.UTC)
        timeout = self.ledger.settings.timeout
        record = reports.awaiting(job, parts, self.sim(), sent, timeout)
        if record is not None:
            await self._retry_until_done(lambda: self.ledger.record(record), job)
            # A report that overtook the last +CMGS was parked: it matches now.
            await self.ledger.retry_parked(record.sim)

    async def _on_report(self, report: StatusReport) -> None:
        """Called by the modem; returns once the report is matched or kept on the bus."""
        await self.ledger.take(report, self.sim())


def ledger_settings(agent: AgentConfig) -> LedgerSettings:
    return LedgerSettings(
        timeout=dt.timedelta(seconds=agent.report_timeout),
        unmatched_after=dt.timedelta(seconds=agent.report_unmatched_after),
        sweep=agent.report_sweep,
    )


async def inbound_part_keys(kv: KeyValue) -> list[str]:
    """Every key of the inbound-parts bucket (parts of messages not yet complete)."""
    try:
        return list(await kv.keys())
    except NoKeysError:
        return []


def _unconfirmed(claim: Awaitable[object] | None, exc: BaseException) -> bool:
    """Whether `exc` is the claim's own failure other than "claimed before"."""
    if not isinstance(claim, asyncio.Future) or not claim.done() or claim.cancelled():
        return False
    if claim.exception() is not exc:
        return False
    return not (isinstance(exc, APIError) and exc.err_code in WRONG_LAST_SEQUENCE)


def _any_part_sent(outcome: SendOutcome) -> bool:
    return any(part.error is None for part in outcome.parts)


def _part_key(port: str, part: InboundPart) -> str:
    sender = part.sender.encode().hex()
    return f"{port}.{sender}.{part.reference}.{part.total}.{part.sequence}"


class _KeepAlive:
    """Tells JetStream the job is still being worked on while a slow modem sends it.

    A timer, not a task: most jobs finish long before the first tick.
    """

    def __init__(self, msg: Msg, every: float) -> None:
        self._msg = msg
        self._every = every
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(every, self._tick)

    def _tick(self) -> None:
        task = self._loop.create_task(self._progress())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._timer = self._loop.call_later(self._every, self._tick)

    async def _progress(self) -> None:
        with contextlib.suppress(Exception):
            await self._msg.in_progress()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()
