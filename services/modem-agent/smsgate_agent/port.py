"""One port of the farm: its modem, its SIM's policy, the jobs it sends and what it receives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from smsgate import contracts
from smsgate.config import AgentConfig, AgentPort

from smsgate_agent.modem import Modem, ModemInfo, SendOutcome
from smsgate_agent.pdu import Deliver, StatusReport
from smsgate_agent.policy import PortPolicy, effective
from smsgate_agent.publisher import Publisher
from smsgate_agent.reassembly import InboundPart, Joined, Reassembler
from smsgate_agent.reports import MessageDelivery, ReportBook

log = logging.getLogger("smsgate.agent")

FINAL = {
    contracts.MessageState.SENT,
    contracts.MessageState.FAILED,
    contracts.MessageState.DELIVERED,
    contracts.MessageState.UNDELIVERED,
}
RESULT_RETRY_MAX = 5.0  # seconds between attempts to publish a result while NATS is away
DELIVERY_STATE = {
    "delivered": contracts.DeliveryState.DELIVERED,
    "failed": contracts.DeliveryState.FAILED,
    "expired": contracts.DeliveryState.EXPIRED,
}


@dataclass
class _Sent:
    """What a delivery report needs to know about a sent message."""

    job: contracts.SendJob
    parts: list[contracts.PartResult]


class PortWorker:
    """Takes jobs when idle and healthy, sends them, reports every outcome once."""

    def __init__(
        self,
        agent: AgentConfig,
        port: AgentPort,
        publisher: Publisher,
        *,
        wake: asyncio.Event | None = None,
        handling: set[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.cfg = port
        self.name = port.name
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
        self.inbox: asyncio.Queue[tuple[Msg, bool]] = asyncio.Queue()
        self.idle = asyncio.Event()
        self.changed = asyncio.Event()  # wakes the loops when availability changes
        self.wake = wake or asyncio.Event()  # tells the agent's fetcher this port is idle
        # Ids of the jobs this agent's ports hold now (shared by the agent's workers).
        self.handling = handling if handling is not None else set()
        self.disabled = not port.enabled
        self.draining = False
        self.busy = False
        self.sent = self.failed = self.received = 0
        self.last_error: str | None = None
        self.reassembler = Reassembler(timeout=agent.reassembly_timeout)
        self.reports = ReportBook()
        self.awaiting_report: dict[str, _Sent] = {}
        self._last_status: contracts.PortStatus | None = None
        self._last_imsi: str | None = None

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
        return self.status() == contracts.PortStatus.READY and self.inbox.empty()

    def state(self) -> contracts.PortState:
        info: ModemInfo = self.modem.info
        blocked = self.policy.blocked(self.clock())
        return contracts.PortState(
            port=self.name,
            port_number=self.cfg.gateway_number,
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
            queue=self.inbox.qsize(),
            last_error=blocked or info.last_error or self.last_error,
            updated=contracts.utcnow(),
            heartbeat_interval=self.agent.heartbeat,
        )

    async def publish_state(self, *, force: bool = False) -> None:
        """Write the port's state to the KV; a status change also becomes a port event."""
        state = self.state()
        change = None
        if state.status != self._last_status:
            change = state.status.value
        elif state.imsi != self._last_imsi and self._last_imsi is not None:
            change = "sim changed"
        if change is None and not force:
            return
        self._last_status, self._last_imsi = state.status, state.imsi or self._last_imsi
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

    def _on_modem_state(self, info: ModemInfo) -> None:
        self.changed.set()

    # --- the send loop ------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Wait until this port can send, announce it idle, send what arrives."""
        while not stopping.is_set():
            await self.publish_state()
            wait = self.policy.wait(self.clock())
            if wait > 0:
                await _sleep_or(stopping, wait)
                continue
            if not self.can_take():
                self.idle.clear()
                self.changed.clear()
                await _sleep_or(stopping, 1.0, self.changed)
                continue
            self.idle.set()
            self.wake.set()
            get = asyncio.ensure_future(self.inbox.get())
            stop = asyncio.ensure_future(stopping.wait())
            changed = asyncio.ensure_future(self.changed.wait())
            await asyncio.wait({get, stop, changed}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            changed.cancel()
            if not get.done():
                get.cancel()
                self.changed.clear()
                continue
            self.idle.clear()
            msg, pinned = get.result()
            await self.handle(msg, pinned=pinned)
        self.idle.clear()
        # Jobs handed to us but not started go back at once for another port.
        while not self.inbox.empty():
            msg, _ = self.inbox.get_nowait()
            await msg.nak()

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
        progress = asyncio.create_task(_keep_alive(msg, self.agent.ack_wait / 3))
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
        previous = await self.publisher.status(job.id)
        if previous is not None and previous.state in FINAL:
            await msg.ack()  # done before; the ack was lost
            return
        if previous is not None and previous.state == contracts.MessageState.SENDING:
            if not self.agent.resend_interrupted:
                await self._finish(msg, job, contracts.SendStatus.FAILED, "interrupted", [])
                return
            log.warning("%s: re-sending interrupted message %s", self.name, job.id)

        async def mark(sequence: int) -> None:
            if sequence == 1:
                await self._set_state(job, contracts.MessageState.SENDING)

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
        now = self.clock()
        if outcome.ok:
            self.policy.record_sent(now, len(outcome.parts))
            self.sent += 1
            self.last_error = None
            await self._finish(msg, job, contracts.SendStatus.SENT, None, outcome.parts)
            if job.status_report:
                self.awaiting_report[job.id] = _Sent(job, outcome.parts)
                # A report can beat the last +CMGS; the book then decides right here.
                early = self.reports.expect(job.id, job.to, outcome.parts, now)
                if early is not None:
                    await self._publish_report(early)
            return
        self.last_error = outcome.error
        if self.policy.record_failed(now):
            log.warning("%s: parked after repeated failures (%s)", self.name, outcome.error)
        if outcome.temporary and not _any_part_sent(outcome) and not pinned:
            # Nothing reached the network: another port may do better.
            await self._set_state(job, contracts.MessageState.QUEUED)
            await msg.nak(delay=1.0)
            return
        self.failed += 1
        await self._finish(msg, job, contracts.SendStatus.FAILED, outcome.error, outcome.parts)

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
            port_number=self.cfg.gateway_number,
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
        delay = 0.5
        while True:
            try:
                await self.publisher.result(result, created=job.created, reply_to=job.reply_to)
                break
            except Exception as exc:
                log.warning(
                    "%s: result of %s not published yet (%s); retrying", self.name, job.id, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESULT_RETRY_MAX)
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

    async def _set_state(self, job: contracts.SendJob, state: contracts.MessageState) -> None:
        now = contracts.utcnow()
        await self.publisher.put_status(
            contracts.MessageStatus(
                id=job.id,
                to=job.to,
                state=state,
                port=self.name,
                agent=self.publisher.agent,
                caller_id=job.caller_id,
                user=job.user,
                created=job.created,
                updated=now,
            )
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
                port_number=self.cfg.gateway_number,
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

    async def _on_report(self, report: StatusReport) -> None:
        delivery = self.reports.match(report, self.clock())
        if delivery is not None:
            await self._publish_report(delivery)

    async def _publish_report(self, delivery: MessageDelivery) -> None:
        sent = self.awaiting_report.pop(delivery.message_id, None)
        if sent is None:
            return
        job = sent.job
        state = DELIVERY_STATE.get(delivery.state, contracts.DeliveryState.FAILED)
        now = contracts.utcnow()
        report = contracts.DeliveryReport(
            event_id=f"{job.id}:report",
            port=self.name,
            port_number=self.cfg.gateway_number,
            imsi=self.modem.info.imsi,
            time=now,
            id=job.id,
            caller_id=job.caller_id,
            to=job.to,
            state=state,
            reason=delivery.reason,
            status_code=delivery.status,
            smsc_time=delivery.discharge_time,
            user=job.user,
        )
        # The status this agent wrote when the message was sent, moved on by the report:
        # built here rather than read back from the KV, and sent beside the event.
        status = contracts.MessageStatus(
            id=job.id,
            to=job.to,
            state=contracts.MessageState.DELIVERED
            if state == contracts.DeliveryState.DELIVERED
            else contracts.MessageState.UNDELIVERED,
            port=self.name,
            agent=self.publisher.agent,
            parts=sent.parts,
            delivery=state,
            caller_id=job.caller_id,
            user=job.user,
            created=job.created,
            updated=now,
        )
        event_failed, status_failed = await self.publisher.event_and_status(report, status)
        if event_failed is not None:
            raise event_failed
        if status_failed is not None:
            log.warning("%s: status of %s not updated: %s", self.name, job.id, status_failed)


async def inbound_part_keys(kv: KeyValue) -> list[str]:
    """Every key of the inbound-parts bucket (parts of messages not yet complete)."""
    try:
        return list(await kv.keys())
    except NoKeysError:
        return []


def _any_part_sent(outcome: SendOutcome) -> bool:
    return any(part.error is None for part in outcome.parts)


def _part_key(port: str, part: InboundPart) -> str:
    sender = part.sender.encode().hex()
    return f"{port}.{sender}.{part.reference}.{part.total}.{part.sequence}"


async def _keep_alive(msg: Msg, every: float) -> None:
    """Tell JetStream the job is still being worked on while a slow modem sends it."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):
            await msg.in_progress()


async def _sleep_or(stopping: asyncio.Event, seconds: float, *more: asyncio.Event) -> None:
    waits: list[Awaitable[object]] = [stopping.wait(), *(e.wait() for e in more)]
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
