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
- `after_send`: what a send's outcome makes of the job (sent, back to the queue, failed).
- `claim_unconfirmed`: whether a failure is the claim's own write failing (NATS away),
  so the job goes back with nothing sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Protocol

from smsgate import contracts
from smsgate.backoff import Backoff
from smsgate.contracts import MessageState, MessageStatus, PartResult, SendJob, SendStatus

from smsgate_agent.sending import PartHook, SendOutcome

log = logging.getLogger("smsgate.agent")

# The states a message ends in: a job found claimed in one of them is done.
FINAL = frozenset(
    {MessageState.SENT, MessageState.FAILED, MessageState.DELIVERED, MessageState.UNDELIVERED}
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

    async def claim(self, message_id: str, token: str) -> Awaitable[object]:
        """Create the claim now; the awaitable is its acknowledgement, which fails with an
        error `is_taken` recognises when the message was claimed before."""
        ...

    async def reclaim(self, message_id: str, token: str) -> bool:
        """Take the key over if it holds only a released claim; False when a claim stands."""
        ...

    async def unclaim(self, message_id: str, token: str) -> None:
        """Drop the claim if it still holds `token`."""
        ...

    async def status(self, message_id: str) -> MessageStatus | None: ...

    def is_taken(self, exc: BaseException) -> bool:
        """Whether `exc` says the claim existed already."""
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
    ) -> None:
        """Publish the job's one result (however long NATS is away), then ack it."""
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


class ClaimFound(StrEnum):
    """What a job becomes whose claim stands: it was handed to a modem before."""

    ACK = "ack"  # settled before; only its ack was lost
    FAIL_INTERRUPTED = "fail interrupted"  # a send may have happened: fail it `interrupted`
    RESEND = "resend"  # the operator asked for interrupted messages to be sent again


class AfterSend(StrEnum):
    """What a send's outcome makes of the job."""

    SENT = "sent"
    REQUEUE = "requeue"  # nothing reached a network: back to the queue for another port
    FAIL = "fail"


class Ending(StrEnum):
    """How one handling of a job ended."""

    SENT = "sent"  # result `sent` published, job acked
    FAILED = "failed"  # result `failed` published, job acked
    INTERRUPTED = "interrupted"  # claimed before and not settled: failed `interrupted`
    ALREADY_SETTLED = "already settled"  # claimed and settled before: acked, nothing sent
    REQUEUED = "requeued"  # nothing reached a network: claim dropped, job back to the queue
    GIVEN_BACK = "given back"  # the claim's write never confirmed: claim dropped, nak'ed
    HELD_HERE = "held here"  # another port of this agent holds the job: nak'ed for later
    LEFT = "left for redelivery"  # NATS failed before the outcome was settled


def claim_found(previous: MessageStatus | None, *, resend_interrupted: bool) -> ClaimFound:
    """The rule for a job whose claim stands (a modem had it before: an agent died
    mid-send, or a result's ack was lost): settled by its status, never sent a second
    time by surprise."""
    if previous is not None and previous.state in FINAL:
        return ClaimFound.ACK
    if resend_interrupted:
        return ClaimFound.RESEND
    return ClaimFound.FAIL_INTERRUPTED


def after_send(outcome: SendOutcome, *, pinned: bool) -> AfterSend:
    """A temporary failure with no part sent goes back for another port, unless the job
    is pinned to this one; any other failure is the job's result."""
    if outcome.ok:
        return AfterSend.SENT
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
    """Keep at a bus write that must happen, however long NATS is away."""
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
        owner: str,
        resend_interrupted: bool,
        held_delay: float,
        handling: set[str] | None = None,
    ) -> None:
        """`name`: the port's, for the log; `owner`: agent/port, the start of every claim
        token; `held_delay`: how long a job held by another port of this agent waits
        before it is handed out again; `handling`: the ids of the jobs this agent's ports
        hold now (one set shared by its ports)."""
        self.port = port
        self.claims = claims
        self.name = name
        self.owner = owner
        self.resend_interrupted = resend_interrupted
        self.held_delay = held_delay
        self.handling = handling if handling is not None else set()

    async def admit(self, handle: JobHandle, job: SendJob) -> bool:
        """Take the job, unless another port of this agent holds it: handed out again
        (NATS was away for longer than ack_wait), that port settles it. Calling it
        `interrupted` here would override the result it holds."""
        if job.id in self.handling:
            with contextlib.suppress(Exception):
                await handle.nak(delay=self.held_delay)
            return False
        self.handling.add(job.id)
        return True

    def release(self, job: SendJob) -> None:
        self.handling.discard(job.id)

    async def send(self, handle: JobHandle, job: SendJob, *, pinned: bool) -> Ending:
        """Send an admitted job and make sure it ends in exactly one result (or goes back)."""
        try:
            return await self._send(handle, job, pinned=pinned)
        except Exception as exc:
            # NATS failed before the outcome was settled (status unreadable, the claim not
            # written): the job comes back after ack_wait and the claim decides its fate.
            log.warning("%s: message %s left for redelivery: %s", self.name, job.id, exc)
            return Ending.LEFT

    async def _send(self, handle: JobHandle, job: SendJob, *, pinned: bool) -> Ending:
        token = f"{self.owner}/{contracts.new_id()}"  # this handling's
        try:
            return await self._send_claimed(handle, job, token, pinned=pinned, claim=True)
        except Exception as exc:
            if not self.claims.is_taken(exc):
                raise
        if await self.claims.reclaim(job.id, token):  # only a released claim was there
            return await self._send_claimed(
                handle, job, token, pinned=pinned, claim=False, holding=True
            )
        return await self._claimed_before(handle, job, pinned=pinned)

    async def _claimed_before(self, handle: JobHandle, job: SendJob, *, pinned: bool) -> Ending:
        previous = await self.claims.status(job.id)
        found = claim_found(previous, resend_interrupted=self.resend_interrupted)
        if found is ClaimFound.ACK:
            await handle.ack()
            return Ending.ALREADY_SETTLED
        if found is ClaimFound.FAIL_INTERRUPTED:
            await self.port.finish(handle, job, SendStatus.FAILED, "interrupted", [])
            return Ending.INTERRUPTED
        log.warning("%s: re-sending interrupted message %s", self.name, job.id)
        return await self._send_claimed(handle, job, "", pinned=pinned, claim=False)

    async def _send_claimed(
        self,
        handle: JobHandle,
        job: SendJob,
        token: str,
        *,
        pinned: bool,
        claim: bool,
        holding: bool = False,
    ) -> Ending:
        """`claim`: create the claim (holding `token`) at the first part; `holding`: the
        claim with `token` is ours already."""
        claim_ack: Awaitable[object] | None = None

        async def mark(sequence: int) -> Awaitable[object] | None:
            # The claim is sent before the first AT+CMGS; its ack is awaited at the prompt.
            nonlocal claim_ack
            if sequence != 1 or claim_ack is not None or not claim:
                return None
            claim_ack = await self.claims.claim(job.id, token)
            if isinstance(claim_ack, asyncio.Future):
                claim_ack.add_done_callback(lambda done: self._claimed(done, job))
            return claim_ack

        try:
            outcome = await self.port.attempt(job, mark)
            if claim_ack is not None:
                await claim_ack  # a part refused before the prompt: the claim still decides
        except Exception as exc:
            if not claim_unconfirmed(claim_ack, exc, is_taken=self.claims.is_taken):
                raise
            log.warning("%s: claim of %s unconfirmed (%s); nothing sent", self.name, job.id, exc)
            await until_done(lambda: self.claims.unclaim(job.id, token), f"{self.name}: {job.id}")
            with contextlib.suppress(Exception):
                await handle.nak()
            return Ending.GIVEN_BACK

        after = after_send(outcome, pinned=pinned)
        self.port.record(job, outcome, after)
        if after is AfterSend.SENT:
            # What its report will need goes on record first: a report that came then
            # finds it, and the result is not out until nothing of it can be lost.
            await self.port.after_sent(job, outcome)
            await self.port.finish(handle, job, SendStatus.SENT, None, outcome.parts)
            return Ending.SENT
        if after is AfterSend.REQUEUE:
            # Nothing reached the network: another port may do better, under a new claim.
            if claim_ack is not None or holding:
                await self.claims.unclaim(job.id, token)
            await self.port.requeued(job)
            await handle.nak(delay=REQUEUE_DELAY)
            return Ending.REQUEUED
        await self.port.finish(handle, job, SendStatus.FAILED, outcome.error, outcome.parts)
        return Ending.FAILED

    def _claimed(self, claim: asyncio.Future[object], job: SendJob) -> None:
        """Once the claim holds, show the message `sending`."""
        if claim.cancelled() or claim.exception() is not None:
            return
        self.port.sending(job)


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
