"""The send path's decisions: how one handling of a job ends, with no NATS in sight.

A job is sent under an at-most-once claim: its key in `sms_sending`, created (never
overwritten) before the first part goes to a modem. Every way a handling can end is
decided here, through two small protocols: the job as the work queue handed it out
(`JobHandle`: ack, nak, in progress, term) and the claims (`ClaimStore`: create, take over
a released one, drop, read the message's status). `PortWorker` gives a NATS message and
the `Publisher`; the unit tests give fakes of both.

The rules, each in one function:

- `claim_found`: what a job whose claim stands (it was handed to a modem before) becomes.
  This is the only place that rule lives; a rule that needs more than the message's
  status (who holds the claim, since when) reads it through `ClaimStore` and takes it
  here as an argument.
- `after_send`: what a send's outcome makes of the job (sent, back to the queue, failed,
  or `unknown`: a PDU written and never answered).
- `claim_unconfirmed`: whether a failure is the claim's own write failing (NATS away),
  so the job goes back with nothing sent.
- `settled_before`: whether a copy handed out again finds its message settled by its
  status alone (its claim and result may be gone: they are kept only for the settled
  window once the job is acknowledged).

A copy of a job is acted on only over the connection it was taken up on (`connection`,
the client's reconnect count): a port whose connection was lost since it took the job
up does not claim it, and a claim confirmed after that is dropped again before any part
is written (`StaleCopy`). The server hears a connected agent within the client's ping
bound (`nats.ping_interval` x `nats.max_outstanding_pings`), so nobody else was handed
the job meanwhile; a copy from before a lost connection goes back, and JetStream hands
out a fresh one if the job is still due.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Protocol

from nats.js.errors import KeyDeletedError, KeyNotFoundError
from smsgate import contracts
from smsgate.backoff import Backoff
from smsgate.contracts import (
    Lease,
    MessageState,
    MessageStatus,
    PartResult,
    SendJob,
    SendResult,
    SendStatus,
)

from smsgate_agent.liveness import Claim, Judgement, Verdict, judge
from smsgate_agent.sending import PartHook, SendOutcome

log = logging.getLogger("smsgate.agent")

# The states a message ends in: a job found claimed in one of them is done.
FINAL = frozenset(
    {
        MessageState.SENT,
        MessageState.FAILED,
        MessageState.UNKNOWN,
        MessageState.DELIVERED,
        MessageState.UNDELIVERED,
    }
)
RESULT_RETRY_MAX = 5.0  # seconds between attempts at a bus write while NATS is away
REQUEUE_DELAY = 1.0  # seconds before a job given back for another port is handed out


class JobHandle(Protocol):
    """A job as the work queue handed it out (a JetStream message fits)."""

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def in_progress(self) -> None: ...

    async def term(self) -> None: ...


class ClaimStore(Protocol):
    """The at-most-once claims of messages handed to a modem, and their statuses."""

    async def claim(self, message_id: str, claim: Claim) -> Awaitable[object]:
        """Create the claim now; the awaitable is its acknowledgement, which fails with an
        error `is_taken` recognises when the message was claimed before."""
        ...

    async def reclaim(self, message_id: str, claim: Claim) -> bool:
        """Take the key over if it holds only a released claim; False when a claim stands."""
        ...

    async def unclaim(self, message_id: str, token: str) -> None:
        """Drop the claim if it still holds `token`."""
        ...

    async def status(self, message_id: str) -> MessageStatus | None: ...

    def is_taken(self, exc: BaseException) -> bool:
        """Whether `exc` says the claim existed already."""
        ...

    async def decided(self, message_id: str) -> SendResult | None:
        """The message's decided result (its create-only record), if any."""
        ...

    async def announced(self, result: SendResult, *, created: dt.datetime) -> None:
        """Publish a decided result once more unless its status shows it published."""
        ...

    async def holder(self, message_id: str) -> Claim | None:
        """The standing claim (None: unreadable); KeyNotFoundError when it is gone."""
        ...

    async def lease(self, agent: str) -> Lease | None:
        """The agent's last lease, if any."""
        ...

    async def holder_silent(self, message_id: str, claim: Claim, since: float) -> None:
        """The interim status: still `sending`, its holder not heard from since `since`."""
        ...

    async def settled(self, message_id: str, claim: Claim | None = None) -> None:
        """The message's job is settled and acknowledged: its claim (`claim`, else the
        one standing) is kept only for the settled window from now (never fails: a claim
        kept longer only costs memory)."""
        ...


class SendPort(Protocol):
    """What the send path needs of its port: the modem, the bookkeeping, the result."""

    async def attempt(self, job: SendJob, mark: PartHook) -> SendOutcome:
        """Send through the modem, `mark` called before each part."""
        ...

    def record(self, job: SendJob, outcome: SendOutcome, after: AfterSend) -> None:
        """Count the outcome (policy, counters) before the job is settled."""
        ...

    async def finish(
        self,
        handle: JobHandle,
        job: SendJob,
        status: SendStatus,
        reason: str | None,
        parts: list[PartResult],
        claim: Claim | None = None,
    ) -> bool:
        """Settle the job's one result (kept on disk while NATS is away), ack the job;
        False when another result was decided before it. `claim`: the message's standing
        claim, when known, kept the settled window once the job is acked."""
        ...

    async def settle_pending(self, job: SendJob, handle: JobHandle) -> bool:
        """Settle this agent's own result of the job waiting for the bus; whether one did."""
        ...

    async def drop_claim(self, job: SendJob, token: str) -> None:
        """Drop a claim whose message reached no network, now or once the bus is back."""
        ...

    async def after_sent(self, job: SendJob, outcome: SendOutcome) -> None:
        """Sent (before its result goes out): file what a delivery report needs, if one
        was asked for."""
        ...

    async def requeued(self, job: SendJob) -> None:
        """Show the message queued again (it goes back for another port)."""
        ...

    def sending(self, job: SendJob) -> None:
        """The claim holds: show the message `sending` (no one waits for that)."""
        ...


class StaleCopy(Exception):
    """The connection a job copy was taken up on was lost before its claim held."""


def settled_before(deliveries: int, status: MessageStatus | None) -> bool:
    """Whether a copy of a job is settled by its message's status alone: handed out
    before (`deliveries` > 1, JetStream's count) and its status final. A first delivery
    was never in anyone's hands, so its status is not read (no round trip per job)."""
    return deliveries > 1 and status is not None and status.state in FINAL


class ClaimFound(StrEnum):
    """What a job becomes whose claim stands: it was handed to a modem before."""

    ACK = "ack"  # settled before; only its ack was lost
    HOLDER_DECIDES = "holder decides"  # its holder may be alive: give the job back to it
    # A send may have happened and nobody who knows can be asked: `unknown`, `interrupted`.
    UNKNOWN_INTERRUPTED = "unknown interrupted"
    RESEND = "resend"  # the operator asked for interrupted messages to be sent again


class AfterSend(StrEnum):
    """What a send's outcome makes of the job."""

    SENT = "sent"
    REQUEUE = "requeue"  # nothing reached a network: back to the queue for another port
    FAIL = "fail"
    UNKNOWN = "unknown"  # a PDU was written and never answered: the network may have it


class Ending(StrEnum):
    """How one handling of a job ended."""

    SENT = "sent"  # result `sent` published, job acked
    FAILED = "failed"  # result `failed` published, job acked
    UNKNOWN = "unknown"  # result `unknown` published (the modem hung mid-part), job acked
    INTERRUPTED = "interrupted"  # claimed before and not settled: `unknown`, `interrupted`
    ALREADY_SETTLED = "already settled"  # claimed and settled before: acked, nothing sent
    REQUEUED = "requeued"  # nothing reached a network: claim dropped, job back to the queue
    GIVEN_BACK = "given back"  # the claim's write never confirmed: claim dropped, nak'ed
    HELD_HERE = "held here"  # another port of this agent holds the job: nak'ed for later
    LEFT_TO_HOLDER = "left to its holder"  # another agent holds the claim and may report
    LEFT = "left for redelivery"  # NATS failed before the outcome was settled
    STALE = "stale copy"  # taken up over a connection lost since: given back, nothing sent


def claim_found(
    previous: MessageStatus | None,
    judgement: Judgement | None = None,
    *,
    resend_interrupted: bool,
) -> ClaimFound:
    """The rule for a job whose claim stands (a modem had it before: an agent died
    mid-send, or a result's ack was lost, or its holder is cut off): settled by its
    status, left to a holder that may be alive (`judgement`, see liveness.py), never sent
    a second time by surprise."""
    if previous is not None and previous.state in FINAL:
        return ClaimFound.ACK
    if judgement is not None and judgement.verdict is Verdict.HOLDER_DECIDES:
        return ClaimFound.HOLDER_DECIDES
    if resend_interrupted:
        return ClaimFound.RESEND
    return ClaimFound.UNKNOWN_INTERRUPTED


def after_send(outcome: SendOutcome, *, pinned: bool) -> AfterSend:
    """A temporary failure with no part sent goes back for another port, unless the job
    is pinned to this one; a part written and never answered makes the result `unknown`;
    any other failure is the job's result."""
    if outcome.ok:
        return AfterSend.SENT
    if outcome.unknown:
        return AfterSend.UNKNOWN
    if outcome.temporary and not any_part_sent(outcome) and not pinned:
        return AfterSend.REQUEUE
    return AfterSend.FAIL


def any_part_sent(outcome: SendOutcome) -> bool:
    return any(part.error is None for part in outcome.parts)


def claim_unconfirmed(
    claim: Awaitable[object] | None,
    exc: BaseException,
    *,
    is_taken: Callable[[BaseException], bool],
) -> bool:
    """Whether `exc` is the claim's own failure, other than "claimed before": its write was
    not confirmed (NATS went away), the prompt was cancelled and nothing was sent."""
    if not isinstance(claim, asyncio.Future) or not claim.done() or claim.cancelled():
        return False
    if claim.exception() is not exc:
        return False
    return not is_taken(exc)


async def until_done(step: Callable[[], Awaitable[None]], what: str) -> None:
    """Keep at a bus write that must happen, however long NATS is away (the report
    ledger's records; results go through the agent's spool instead)."""
    backoff = Backoff(0.5, RESULT_RETRY_MAX)
    while True:
        try:
            await step()
            return
        except Exception as exc:
            log.warning("%s not published yet (%s); retrying", what, exc)
            await backoff.sleep()


class SendPath:
    """One port's handling of jobs: admit, claim, send, settle; each ends once."""

    def __init__(
        self,
        port: SendPort,
        claims: ClaimStore,
        *,
        name: str,
        agent: str,
        boot: str,
        resend_interrupted: bool,
        held_delay: float,
        holder_timeout: float = 900.0,
        handling: set[str] | None = None,
        clock: Callable[[], float] = time.time,
        connection: Callable[[], int] = lambda: 0,
    ) -> None:
        """`name`: the port's; `agent` and `boot`: its agent and that agent's run (every
        claim names them); `held_delay`: how long a job held by another port, or another
        agent, waits before it is handed out again; `holder_timeout`: how long a claim's
        silent holder may still report (liveness.py); `handling`: the ids of the jobs
        this agent's ports hold now (one set shared by its ports); `connection`: which
        connection to the server this is (it changes at every reconnect)."""
        self.port = port
        self.claims = claims
        self.name = name
        self.agent = agent
        self.boot = boot
        self.resend_interrupted = resend_interrupted
        self.held_delay = held_delay
        self.holder_timeout = holder_timeout
        self.handling = handling if handling is not None else set()
        self.clock = clock
        self.connection = connection

    async def admit(self, handle: JobHandle, job: SendJob) -> bool:
        """Take the job, unless another port of this agent holds it: handed out again
        (NATS was away for longer than ack_wait), that port settles it. Calling it
        its send `interrupted` here would override the result it holds."""
        if job.id in self.handling:
            with contextlib.suppress(Exception):
                await handle.nak(delay=self.held_delay)
            return False
        self.handling.add(job.id)
        return True

    def release(self, job: SendJob) -> None:
        self.handling.discard(job.id)

    async def send(
        self, handle: JobHandle, job: SendJob, *, pinned: bool, deliveries: int = 1
    ) -> Ending:
        """Send an admitted job and make sure it ends in exactly one result (or goes back).
        `deliveries`: how many times JetStream has handed the job out, this time included."""
        taken_up = self.connection()
        try:
            if deliveries > 1 and settled_before(deliveries, await self.claims.status(job.id)):
                await handle.ack()  # settled before: only its ack was lost
                return Ending.ALREADY_SETTLED
            return await self._send(handle, job, pinned=pinned, taken_up=taken_up)
        except Exception as exc:
            # NATS failed before the outcome was settled (status unreadable, the claim not
            # written): the job comes back after ack_wait and the claim decides its fate.
            log.warning("%s: message %s left for redelivery: %s", self.name, job.id, exc)
            return Ending.LEFT

    async def _send(
        self, handle: JobHandle, job: SendJob, *, pinned: bool, taken_up: int
    ) -> Ending:
        mine = Claim(  # this handling's
            agent=self.agent,
            boot=self.boot,
            port=self.name,
            token=contracts.new_id(),
            time=self.clock(),
        )
        try:
            return await self._send_claimed(
                handle, job, mine, pinned=pinned, claim=True, taken_up=taken_up
            )
        except Exception as exc:
            if not self.claims.is_taken(exc):
                raise
        if await self.claims.reclaim(job.id, mine):  # only a released claim was there
            return await self._send_claimed(
                handle, job, mine, pinned=pinned, claim=False, holding=True, taken_up=taken_up
            )
        return await self._claimed_before(handle, job, pinned=pinned, taken_up=taken_up)

    async def _claimed_before(
        self, handle: JobHandle, job: SendJob, *, pinned: bool, taken_up: int
    ) -> Ending:
        """The message was claimed before: its result is decided, or its holder decides
        it, or (the holder gone) it is `unknown`, `interrupted` (see liveness.py)."""
        decided = await self.claims.decided(job.id)
        if decided is not None:
            await self.claims.announced(decided, created=job.created)
            await handle.ack()  # decided before; the ack was lost
            await self.claims.settled(job.id)
            return Ending.ALREADY_SETTLED
        if await self.port.settle_pending(job, handle):
            return Ending.ALREADY_SETTLED  # this agent's result was waiting for the bus
        previous = await self.claims.status(job.id)
        judgement: Judgement | None = None
        holder: Claim | None = None
        if previous is None or previous.state not in FINAL:
            try:
                holder = await self.claims.holder(job.id)
            except (KeyNotFoundError, KeyDeletedError):
                await handle.nak()  # its holder dropped it meanwhile: claim it anew
                return Ending.REQUEUED
            lease = await self.claims.lease(holder.agent) if holder is not None else None
            judgement = judge(
                holder,
                lease,
                agent=self.agent,
                boot=self.boot,
                now=self.clock(),
                holder_timeout=self.holder_timeout,
            )
            since = judgement.holder_silent_since
            if judgement.verdict is Verdict.HOLDER_DECIDES and holder and since is not None:
                await self.claims.holder_silent(job.id, holder, since)
        found = claim_found(previous, judgement, resend_interrupted=self.resend_interrupted)
        if found is ClaimFound.ACK:
            await handle.ack()
            await self.claims.settled(job.id)
            return Ending.ALREADY_SETTLED
        if found is ClaimFound.HOLDER_DECIDES:
            assert judgement is not None
            log.info("%s: %s left to its holder: %s", self.name, job.id, judgement.why)
            await handle.nak(delay=self.held_delay)
            return Ending.LEFT_TO_HOLDER
        if judgement is not None:
            log.warning("%s: %s interrupted: %s", self.name, job.id, judgement.why)
        if found is ClaimFound.UNKNOWN_INTERRUPTED:
            # It may have reached the network through the holder's modem: nobody left can
            # say, so the result says so (SMPP's UNKNOWN), never `failed`.
            await self.port.finish(handle, job, SendStatus.UNKNOWN, "interrupted", [], holder)
            return Ending.INTERRUPTED
        log.warning("%s: re-sending interrupted message %s", self.name, job.id)
        return await self._send_claimed(
            handle, job, None, pinned=pinned, claim=False, taken_up=taken_up
        )

    async def _send_claimed(
        self,
        handle: JobHandle,
        job: SendJob,
        mine: Claim | None,
        *,
        pinned: bool,
        claim: bool,
        taken_up: int,
        holding: bool = False,
    ) -> Ending:
        """`claim`: create the claim `mine` at the first part; `holding`: `mine` stands
        already. `mine` None: re-sending an interrupted message under its old claim.
        `taken_up`: the connection the job copy was taken up on (see StaleCopy)."""
        claim_ack: Awaitable[object] | None = None
        gate: Awaitable[object] | None = None

        def stale() -> StaleCopy | None:
            if self.connection() == taken_up:
                return None
            return StaleCopy(f"the connection {job.id} was taken up on is lost")

        async def mark(sequence: int) -> Awaitable[object] | None:
            # The claim is sent before the first AT+CMGS; its ack, and that the copy is
            # still current then, is awaited at the prompt (the gate).
            nonlocal claim_ack, gate
            if sequence != 1 or claim_ack is not None or not claim or mine is None:
                return None
            if (refused := stale()) is not None:
                raise refused
            claim_ack = await self.claims.claim(job.id, mine)
            if isinstance(claim_ack, asyncio.Future):
                claim_ack.add_done_callback(lambda done: self._claimed(done, job))
                gate = _passed_if(claim_ack, stale)
            else:
                gate = claim_ack
            return gate

        try:
            outcome = await self.port.attempt(job, mark)
            if gate is not None:
                await gate  # a part refused before the prompt: the claim still decides
        except StaleCopy as exc:
            # Nothing was written (the gate failed at the prompt, or before the claim).
            log.warning("%s: %s; given back, nothing sent", self.name, exc)
            if mine is not None and claim_ack is not None:
                await self.port.drop_claim(job, mine.token)
            with contextlib.suppress(Exception):
                await handle.nak()
            return Ending.STALE
        except Exception as exc:
            if isinstance(gate, asyncio.Future) and gate.done() and not gate.cancelled():
                gate.exception()  # retrieved: the claim's own failure is judged below
            if not claim_unconfirmed(claim_ack, exc, is_taken=self.claims.is_taken):
                raise
            log.warning("%s: claim of %s unconfirmed (%s); nothing sent", self.name, job.id, exc)
            assert mine is not None
            await self.port.drop_claim(job, mine.token)
            with contextlib.suppress(Exception):
                await handle.nak()
            return Ending.GIVEN_BACK

        after = after_send(outcome, pinned=pinned)
        self.port.record(job, outcome, after)
        if after is AfterSend.SENT:
            # What its report will need goes on record first: a report that came then
            # finds it, and the result is not out until nothing of it can be lost.
            await self.port.after_sent(job, outcome)
            await self.port.finish(handle, job, SendStatus.SENT, None, outcome.parts, mine)
            return Ending.SENT
        if after is AfterSend.REQUEUE:
            # Nothing reached the network: another port may do better, under a new claim.
            if mine is not None and (claim_ack is not None or holding):
                await self.claims.unclaim(job.id, mine.token)
            await self.port.requeued(job)
            await handle.nak(delay=REQUEUE_DELAY)
            return Ending.REQUEUED
        if after is AfterSend.UNKNOWN:
            await self.port.finish(
                handle, job, SendStatus.UNKNOWN, outcome.error, outcome.parts, mine
            )
            return Ending.UNKNOWN
        await self.port.finish(handle, job, SendStatus.FAILED, outcome.error, outcome.parts, mine)
        return Ending.FAILED

    def _claimed(self, claim: asyncio.Future[object], job: SendJob) -> None:
        """Once the claim holds, show the message `sending`."""
        if claim.cancelled() or claim.exception() is not None:
            return
        self.port.sending(job)


def _passed_if(
    ack: asyncio.Future[object], refusal: Callable[[], BaseException | None]
) -> asyncio.Future[object]:
    """A future that ends as `ack` does, unless `refusal()` (asked once `ack` holds) is
    an exception: then with that one."""
    gate: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def passed(done: asyncio.Future[object]) -> None:
        if gate.done():
            return
        if done.cancelled():
            gate.cancel()
        elif (exc := done.exception()) is not None:
            gate.set_exception(exc)
        elif (refused := refusal()) is not None:
            gate.set_exception(refused)
        else:
            gate.set_result(None)

    ack.add_done_callback(passed)
    return gate


class KeepAlive:
    """Tells the work queue the job is still being worked on while a slow modem sends it.

    A timer, not a task: most jobs finish long before the first tick.
    """

    def __init__(self, handle: JobHandle, every: float) -> None:
        self._handle = handle
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
            await self._handle.in_progress()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()
