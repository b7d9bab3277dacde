"""Every way a job's handling ends, without NATS: fakes of the job handle and the claims.

`FakeJob` records what the send path told the work queue (ack, nak, in progress, term);
`FakeClaims` is the `sms_sending` bucket and the message statuses, with NATS outages
scripted; `FakePort` is the modem and the port's bookkeeping. The integration and
reliability tests run the same paths against a real nats-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import pytest
from nats.js.errors import KeyNotFoundError
from smsgate import contracts
from smsgate.contracts import Lease, MessageState, MessageStatus, PartResult, SendJob, SendStatus
from smsgate_agent import send_path
from smsgate_agent.liveness import Claim
from smsgate_agent.send_path import (
    AfterSend,
    ClaimFound,
    Ending,
    JobHandle,
    KeepAlive,
    SendPath,
    after_send,
    claim_found,
    claim_unconfirmed,
)
from smsgate_agent.sending import PartHook, SendOutcome

AGENT, BOOT = "agent-a", "run-1"  # the agent of the port under test, and its run
NOW = 1_000_000.0  # the wall clock the send path sees
HOLDER_TIMEOUT = 900.0


class ClaimTaken(Exception):
    """What the fake store's create says when the claim exists (JetStream: 10071)."""


class NatsAway(ConnectionError):
    """A bus call that never got its answer."""


@dataclass
class FakeJob:
    """A job as the work queue handed it out; `calls` is what it was told, in order."""

    calls: list[tuple[str, float | None]] = field(default_factory=list)
    nak_fails: bool = False
    ticked: asyncio.Event = field(default_factory=asyncio.Event)  # set by in_progress

    async def ack(self) -> None:
        self.calls.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        if self.nak_fails:
            raise NatsAway("nak not sent")
        self.calls.append(("nak", delay))

    async def in_progress(self) -> None:
        self.calls.append(("in_progress", None))
        self.ticked.set()

    async def term(self) -> None:
        self.calls.append(("term", None))


RELEASED = ""  # a claim dropped by unclaim: the key is deleted, create() may take it over


def held_by(token: str) -> Claim:
    """A claim given as a bare token: an agent's that died long ago (no lease since)."""
    return Claim(agent="agent-b", boot="gone", port="lte-9", token=token, time=0.0)


@dataclass
class FakeClaims:
    """The `sms_sending` claims (id -> token; `holders`: the whole claims this run made)
    and decided results, the agents' leases and the `sms_messages` statuses."""

    claims: dict[str, str] = field(default_factory=dict)
    holders: dict[str, Claim] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    results: dict[str, contracts.SendResult] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)  # interim statuses written
    statuses: dict[str, MessageStatus] = field(default_factory=dict)
    ack_lost: bool = False  # the claim is written, but its ack never comes
    unclaim_failures: int = 0  # NATS away for this many unclaims
    status_fails: bool = False
    unclaimed: list[str] = field(default_factory=list)
    shortened: list[str] = field(default_factory=list)  # claims kept the settled window

    async def claim(self, message_id: str, claim: Claim) -> Awaitable[object]:
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if message_id in self.claims:  # a released key too: its delete is its last sequence
            ack.set_exception(ClaimTaken(message_id))
            return ack
        self.claims[message_id] = claim.token
        self.holders[message_id] = claim
        if self.ack_lost:
            ack.set_exception(NatsAway("no ack for the claim"))
        else:
            ack.set_result(None)
        return ack

    async def settled(self, message_id: str, claim: Claim | None = None) -> None:
        self.shortened.append(message_id)

    async def reclaim(self, message_id: str, claim: Claim) -> bool:
        if self.claims.get(message_id) != RELEASED:
            return False
        self.claims[message_id] = claim.token
        self.holders[message_id] = claim
        return True

    async def unclaim(self, message_id: str, token: str) -> None:
        if self.unclaim_failures > 0:
            self.unclaim_failures -= 1
            raise NatsAway("unclaim not sent")
        self.unclaimed.append(token)
        if self.claims.get(message_id) == token:
            self.claims[message_id] = RELEASED

    async def status(self, message_id: str) -> MessageStatus | None:
        if self.status_fails:
            raise NatsAway("status unreadable")
        return self.statuses.get(message_id)

    def is_taken(self, exc: BaseException) -> bool:
        return isinstance(exc, ClaimTaken)

    async def decided(self, message_id: str) -> contracts.SendResult | None:
        return self.results.get(message_id)

    async def announced(self, result: contracts.SendResult, *, created: object) -> None:
        pass

    async def holder(self, message_id: str) -> Claim | None:
        token = self.claims.get(message_id, RELEASED)
        if token == RELEASED:
            raise KeyNotFoundError
        held = self.holders.get(message_id)
        return held if held is not None and held.token == token else held_by(token)

    async def lease(self, agent: str) -> Lease | None:
        return self.leases.get(agent)

    async def holder_silent(self, message_id: str, claim: Claim, since: float) -> None:
        self.silent.append(message_id)


@dataclass
class Result:
    status: SendStatus
    reason: str | None
    parts: list[PartResult]


@dataclass
class FakePort:
    """The modem (scripted outcomes, one per attempt) and what the port was told."""

    outcomes: list[SendOutcome] = field(default_factory=list)
    refuse_before_prompt: bool = False  # the modem gives up before awaiting the gate
    attempt_error: Exception | None = None
    results: list[Result] = field(default_factory=list)
    recorded: list[AfterSend] = field(default_factory=list)
    written: list[int] = field(default_factory=list)  # parts whose PDU reached the modem
    marks: list[Awaitable[object] | None] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    results_when_reported: list[int] = field(default_factory=list)
    requeued_ids: list[str] = field(default_factory=list)
    sending_ids: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # claims handed to the backlog to drop
    spooled: dict[str, Result] = field(default_factory=dict)  # results waiting for the bus
    claims_kept: list[Claim | None] = field(default_factory=list)  # each result's claim

    async def attempt(self, job: SendJob, mark: PartHook) -> SendOutcome:
        if self.attempt_error is not None:
            raise self.attempt_error
        outcome = self.outcomes.pop(0)
        if not outcome.parts:  # tried, but no prompt came: nothing was written
            self.marks.append(await mark(1))
            return outcome
        for part in outcome.parts:
            gate = await mark(part.sequence)
            self.marks.append(gate)
            if self.refuse_before_prompt:
                return outcome
            if gate is not None:
                await gate  # at the prompt: a failure cancels the part (ESC) and propagates
            self.written.append(part.sequence)
        return outcome

    def record(self, job: SendJob, outcome: SendOutcome, after: AfterSend) -> None:
        self.recorded.append(after)

    async def finish(
        self,
        handle: JobHandle,
        job: SendJob,
        status: SendStatus,
        reason: str | None,
        parts: list[PartResult],
        claim: Claim | None = None,
    ) -> bool:
        self.results.append(Result(status, reason, parts))
        self.claims_kept.append(claim)
        await handle.ack()
        return True

    async def settle_pending(self, job: SendJob, handle: JobHandle) -> bool:
        waiting = self.spooled.pop(job.id, None)
        if waiting is None:
            return False
        self.results.append(waiting)
        await handle.ack()
        return True

    async def drop_claim(self, job: SendJob, token: str) -> None:
        self.dropped.append(token)

    async def after_sent(self, job: SendJob, outcome: SendOutcome) -> None:
        self.reported.append(job.id)
        self.results_when_reported.append(len(self.results))

    async def requeued(self, job: SendJob) -> None:
        self.requeued_ids.append(job.id)

    def sending(self, job: SendJob) -> None:
        self.sending_ids.append(job.id)


SENT = SendOutcome(True, [PartResult(sequence=1, reference=7)])
TWO_SENT = SendOutcome(True, [PartResult(sequence=1, reference=7), PartResult(sequence=2)])
REFUSED = SendOutcome(
    False, [PartResult(sequence=1, error="call barred")], "call barred", temporary=False, code=10
)
NO_NETWORK = SendOutcome(False, [], "port down", temporary=True)
CONGESTED = SendOutcome(
    False, [PartResult(sequence=1, error="congestion")], "congestion", temporary=True, code=42
)
# The PDU was written and the modem never answered: the network may have it.
HUNG = SendOutcome(
    False,
    [PartResult(sequence=1, error="outcome unknown: no answer after the PDU")],
    "outcome unknown: no answer after the PDU",
    unknown=True,
)
# Part 1 went out, then part 2 was written and never answered.
HALF_HUNG = SendOutcome(
    False,
    [
        PartResult(sequence=1, reference=3),
        PartResult(sequence=2, error="outcome unknown: modem closed"),
    ],
    "outcome unknown: modem closed",
    unknown=True,
)
# Part 1 went out, part 2 was refused for now: the message is partly on the network.
HALF_SENT = SendOutcome(
    False,
    [PartResult(sequence=1, reference=3), PartResult(sequence=2, error="congestion")],
    "congestion",
    temporary=True,
)


def job(message_id: str = "m1", *, status_report: bool = False) -> SendJob:
    return SendJob(
        id=message_id,
        to="+4917612345678",
        text="hello",
        created=contracts.utcnow(),
        status_report=status_report,
    )


def status(message_id: str, state: MessageState) -> MessageStatus:
    now = contracts.utcnow()
    return MessageStatus(id=message_id, to="+4917612345678", state=state, created=now, updated=now)


def path(
    port: FakePort,
    claims: FakeClaims,
    *,
    resend: bool = False,
    connections: list[int] | None = None,
) -> SendPath:
    """`connections`: what the client's reconnect count reads, call by call (the last
    one stays); the same connection throughout without it."""
    seen = list(connections or [0])

    def connection() -> int:
        return seen.pop(0) if len(seen) > 1 else seen[0]

    return SendPath(
        port,
        claims,
        name="lte-1",
        agent=AGENT,
        boot=BOOT,
        resend_interrupted=resend,
        held_delay=30.0,
        holder_timeout=HOLDER_TIMEOUT,
        clock=lambda: NOW,
        connection=connection,
    )


# --- the rules, as plain functions ---------------------------------------------------------


@pytest.mark.parametrize("state", sorted(send_path.FINAL))
@pytest.mark.parametrize("resend", [False, True])
def test_a_claimed_job_settled_before_is_only_acked(state: MessageState, resend: bool) -> None:
    assert claim_found(status("m1", state), resend_interrupted=resend) is ClaimFound.ACK


@pytest.mark.parametrize("previous", [None, MessageState.QUEUED, MessageState.SENDING])
def test_a_claimed_job_not_settled_is_interrupted_or_resent(previous: MessageState | None) -> None:
    found = status("m1", previous) if previous is not None else None
    assert claim_found(found, resend_interrupted=False) is ClaimFound.UNKNOWN_INTERRUPTED
    assert claim_found(found, resend_interrupted=True) is ClaimFound.RESEND


@pytest.mark.parametrize(
    ("outcome", "pinned", "after"),
    [
        (SENT, False, AfterSend.SENT),
        (SENT, True, AfterSend.SENT),
        (REFUSED, False, AfterSend.FAIL),
        (NO_NETWORK, False, AfterSend.REQUEUE),
        (NO_NETWORK, True, AfterSend.FAIL),  # pinned: no other port may take it
        (CONGESTED, False, AfterSend.REQUEUE),  # refused for now, nothing sent
        (CONGESTED, True, AfterSend.FAIL),
        (HALF_SENT, False, AfterSend.FAIL),  # part 1 is out: never sent again elsewhere
        (HUNG, False, AfterSend.UNKNOWN),  # it may be on the network: neither failed nor sent
        (HUNG, True, AfterSend.UNKNOWN),
        (HALF_HUNG, False, AfterSend.UNKNOWN),
    ],
)
def test_what_an_outcome_makes_of_the_job(
    outcome: SendOutcome, pinned: bool, after: AfterSend
) -> None:
    assert after_send(outcome, pinned=pinned) is after


async def test_only_the_claims_own_failure_other_than_taken_is_unconfirmed() -> None:
    loop = asyncio.get_running_loop()

    def is_taken(exc: BaseException) -> bool:
        return isinstance(exc, ClaimTaken)

    away, taken, other = NatsAway("gone"), ClaimTaken("m1"), RuntimeError("modem")
    failed: asyncio.Future[object] = loop.create_future()
    failed.set_exception(away)
    refused: asyncio.Future[object] = loop.create_future()
    refused.set_exception(taken)
    pending: asyncio.Future[object] = loop.create_future()
    assert claim_unconfirmed(failed, away, is_taken=is_taken)
    assert not claim_unconfirmed(refused, taken, is_taken=is_taken)  # claimed before
    assert not claim_unconfirmed(failed, other, is_taken=is_taken)  # not the claim's
    assert not claim_unconfirmed(pending, away, is_taken=is_taken)
    assert not claim_unconfirmed(None, away, is_taken=is_taken)  # never claimed
    pending.cancel()
    for future in (failed, refused):
        future.exception()  # retrieved: no "never retrieved" warning


# --- a fresh job -----------------------------------------------------------------------------


async def test_a_sent_job_is_claimed_first_published_once_and_acked() -> None:
    port, claims, handle = FakePort([TWO_SENT]), FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    await asyncio.sleep(0)  # the `sending` status follows the claim's ack
    assert ending is Ending.SENT
    assert (claims.holders["m1"].agent, claims.holders["m1"].boot) == (AGENT, BOOT)
    assert port.written == [1, 2]
    assert port.marks[0] is not None
    assert port.marks[1] is None
    assert port.results == [Result(SendStatus.SENT, None, TWO_SENT.parts)]
    assert port.recorded == [AfterSend.SENT]
    assert port.reported == ["m1"]
    assert port.results_when_reported == [0]  # on record for its report before its result
    assert port.sending_ids == ["m1"]
    assert handle.calls == [("ack", None)]


async def test_a_refused_message_fails_and_keeps_its_claim() -> None:
    port, claims, handle = FakePort([REFUSED]), FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.FAILED
    assert port.results == [Result(SendStatus.FAILED, "call barred", REFUSED.parts)]
    assert port.recorded == [AfterSend.FAIL]
    assert claims.claims["m1"] != RELEASED
    assert handle.calls == [("ack", None)]


@pytest.mark.parametrize("outcome", [HUNG, HALF_HUNG])
async def test_a_part_written_and_never_answered_makes_the_result_unknown(
    outcome: SendOutcome,
) -> None:
    port, claims, handle = FakePort([outcome]), FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.UNKNOWN
    assert port.results == [Result(SendStatus.UNKNOWN, outcome.error, outcome.parts)]
    assert port.recorded == [AfterSend.UNKNOWN]
    assert port.reported == []  # not filed as sent: no report is awaited on its account
    assert claims.claims["m1"] != RELEASED  # never sent again, here or elsewhere
    assert port.requeued_ids == []
    assert handle.calls == [("ack", None)]


async def test_a_job_that_reached_no_network_is_requeued_under_no_claim() -> None:
    port, claims, handle = FakePort([NO_NETWORK]), FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.REQUEUED
    assert claims.claims["m1"] == RELEASED  # another port may claim it afresh
    assert port.requeued_ids == ["m1"]
    assert port.results == []
    assert port.recorded == [AfterSend.REQUEUE]
    assert handle.calls == [("nak", send_path.REQUEUE_DELAY)]


async def test_a_port_down_before_the_first_part_requeues_without_touching_claims() -> None:
    port, claims, handle = FakePort([NO_NETWORK]), FakeClaims(), FakeJob()

    async def down(job: SendJob, mark: PartHook) -> SendOutcome:
        return NO_NETWORK  # `port down`: no part was tried, so no claim was made

    port.attempt = down  # type: ignore[method-assign]
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.REQUEUED
    assert claims.claims == {}
    assert claims.unclaimed == []
    assert handle.calls == [("nak", send_path.REQUEUE_DELAY)]


async def test_a_pinned_job_that_reached_no_network_fails_on_its_port() -> None:
    port, claims, handle = FakePort([NO_NETWORK]), FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=True)
    assert ending is Ending.FAILED
    assert port.results == [Result(SendStatus.FAILED, "port down", [])]
    assert handle.calls == [("ack", None)]


async def test_a_message_partly_sent_is_never_requeued() -> None:
    port, claims, handle = FakePort([HALF_SENT]), FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.FAILED
    assert port.results == [Result(SendStatus.FAILED, "congestion", HALF_SENT.parts)]
    assert claims.claims["m1"] != RELEASED
    assert handle.calls == [("ack", None)]


# --- a job claimed before (a redelivery) ------------------------------------------------------


async def test_a_redelivered_job_settled_before_is_acked_and_not_sent() -> None:
    claims = FakeClaims(claims={"m1": "agent-b/lte-9/x"})
    claims.statuses["m1"] = status("m1", MessageState.SENT)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.ALREADY_SETTLED
    assert port.written == []  # the gate failed at the prompt: the part was cancelled
    assert port.results == []
    assert handle.calls == [("ack", None)]
    assert claims.claims["m1"] == "agent-b/lte-9/x"


async def test_a_redelivered_job_not_settled_is_unknown_interrupted() -> None:
    claims = FakeClaims(claims={"m1": "agent-b/lte-9/x"})
    claims.statuses["m1"] = status("m1", MessageState.SENDING)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.INTERRUPTED
    assert port.written == []
    # Its holder's modem may have sent it: not `failed`, which would be a wrong result.
    assert port.results == [Result(SendStatus.UNKNOWN, "interrupted", [])]
    assert handle.calls == [("ack", None)]


async def test_an_interrupted_job_is_resent_when_the_operator_asks() -> None:
    claims = FakeClaims(claims={"m1": "agent-b/lte-9/x"})
    port, handle = FakePort([SENT, SENT]), FakeJob()
    ending = await path(port, claims, resend=True).send(handle, job(), pinned=False)
    assert ending is Ending.SENT
    assert port.written == [1]  # the second attempt, under the claim that stands
    assert port.marks == [port.marks[0], None]  # no new claim for the resend
    assert claims.claims["m1"] == "agent-b/lte-9/x"
    assert port.results == [Result(SendStatus.SENT, None, SENT.parts)]


async def test_a_resent_job_that_reached_no_network_leaves_the_old_claim_alone() -> None:
    claims = FakeClaims(claims={"m1": "agent-b/lte-9/x"})
    port, handle = FakePort([SENT, NO_NETWORK]), FakeJob()
    ending = await path(port, claims, resend=True).send(handle, job(), pinned=False)
    assert ending is Ending.REQUEUED
    assert claims.unclaimed == []
    assert claims.claims["m1"] == "agent-b/lte-9/x"


async def test_a_released_claim_is_taken_over_and_the_job_sent() -> None:
    claims = FakeClaims(claims={"m1": RELEASED})  # the create is refused, the reclaim not
    port, handle = FakePort([SENT, SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.SENT
    assert (claims.holders["m1"].agent, claims.holders["m1"].boot) == (AGENT, BOOT)
    assert port.results == [Result(SendStatus.SENT, None, SENT.parts)]


async def test_a_taken_over_claim_is_dropped_again_when_nothing_was_sent() -> None:
    claims = FakeClaims(claims={"m1": RELEASED})
    port, handle = FakePort([SENT, NO_NETWORK]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.REQUEUED
    assert claims.claims["m1"] == RELEASED
    assert claims.unclaimed == [claims.holders["m1"].token]


async def test_a_claim_refused_after_a_part_failed_before_the_prompt_still_decides() -> None:
    claims = FakeClaims(claims={"m1": "agent-b/lte-9/x"})
    claims.statuses["m1"] = status("m1", MessageState.DELIVERED)
    port = FakePort([REFUSED], refuse_before_prompt=True)
    handle = FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.ALREADY_SETTLED  # not a `call barred` result over a delivered one
    assert port.results == []
    assert handle.calls == [("ack", None)]


# --- the lost ack and NATS outages ------------------------------------------------------------


async def test_a_claim_whose_ack_never_came_is_dropped_and_the_job_given_back() -> None:
    claims = FakeClaims(ack_lost=True)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.GIVEN_BACK
    assert port.written == []  # the prompt was cancelled: nothing went out
    # dropped (now, or by the backlog once NATS is back): a redelivery is not `interrupted`
    assert port.dropped == [claims.holders["m1"].token]
    assert port.results == []
    assert port.sending_ids == []
    assert handle.calls == [("nak", None)]


async def test_a_lost_claim_is_dropped_however_long_nats_stays_away() -> None:
    claims = FakeClaims(ack_lost=True)
    port, handle = FakePort([SENT]), FakeJob(nak_fails=True)
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.GIVEN_BACK
    assert port.dropped == [claims.holders["m1"].token]  # the backlog keeps it until it is done
    assert handle.calls == []  # the nak was lost too: ack_wait hands the job out again


async def test_a_status_unreadable_after_a_refused_claim_leaves_the_job_for_redelivery() -> None:
    claims = FakeClaims(claims={"m1": "agent-b/lte-9/x"}, status_fails=True)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.LEFT
    assert port.results == []
    assert handle.calls == []


async def test_a_failure_outside_the_claim_leaves_the_job_for_redelivery() -> None:
    port = FakePort(attempt_error=NatsAway("requeue status not written"))
    claims, handle = FakeClaims(), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.LEFT
    assert handle.calls == []


async def test_an_unclaim_failing_on_requeue_leaves_the_job_for_redelivery() -> None:
    claims = FakeClaims(unclaim_failures=1)
    port, handle = FakePort([NO_NETWORK]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.LEFT  # the claim stands: the redelivery settles it by status
    assert port.requeued_ids == []
    assert handle.calls == []


# --- admission and progress -------------------------------------------------------------------


async def test_a_job_held_by_another_port_of_this_agent_waits_for_it() -> None:
    handling: set[str] = set()
    first, second = (
        SendPath(
            FakePort(),
            FakeClaims(),
            name=name,
            agent=AGENT,
            boot=BOOT,
            resend_interrupted=False,
            held_delay=30.0,
            handling=handling,
        )
        for name in ("lte-1", "lte-2")
    )
    one, again = FakeJob(), FakeJob()
    assert await first.admit(one, job())
    assert not await second.admit(again, job())
    assert again.calls == [("nak", 30.0)]
    assert not await second.admit(FakeJob(nak_fails=True), job())  # a lost nak is no error
    first.release(job())
    assert await second.admit(FakeJob(), job())


async def test_a_slow_send_tells_the_queue_it_is_still_in_progress() -> None:
    handle = FakeJob()
    keep = KeepAlive(handle, 0.01)
    for _ in range(2):  # it keeps telling, not just once
        await handle.ticked.wait()
        handle.ticked.clear()
    keep.cancel()
    told = len(handle.calls)
    await asyncio.sleep(0.05)
    assert handle.calls == [("in_progress", None)] * told


# --- a claim another agent holds (issue 20: decided by whoever knows) -------------------------


def claimed_by_host_b(
    *, renewed: float, boot: str = "b-run", claimed: float = NOW - 60
) -> FakeClaims:
    claims = FakeClaims(claims={"m1": "t-b"})
    claims.holders["m1"] = Claim(
        agent="agent-b", boot="b-run", port="lte-9", token="t-b", time=claimed
    )
    claims.leases["agent-b"] = Lease(agent="agent-b", boot=boot, renewed=renewed, lease=15.0)
    claims.statuses["m1"] = status("m1", MessageState.SENDING)
    return claims


async def test_a_send_whose_holder_is_alive_is_left_to_it() -> None:
    claims = claimed_by_host_b(renewed=NOW - 1)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.LEFT_TO_HOLDER
    assert port.written == []  # never sent twice
    assert port.results == []  # and not decided here
    assert handle.calls == [("nak", 30.0)]
    assert claims.silent == []


async def test_a_send_whose_holder_is_cut_off_is_left_to_it_and_said_so() -> None:
    claims = claimed_by_host_b(renewed=NOW - 15 - HOLDER_TIMEOUT + 5)  # silent, not yet lost
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.LEFT_TO_HOLDER
    assert port.results == []
    assert claims.silent == ["m1"]  # `sending`, holder not heard from since …


async def test_a_send_whose_holder_is_lost_for_good_is_unknown_interrupted() -> None:
    claims = claimed_by_host_b(renewed=NOW - 15 - HOLDER_TIMEOUT - 5, claimed=NOW - 2000)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.INTERRUPTED
    assert port.results == [Result(SendStatus.UNKNOWN, "interrupted", [])]
    assert port.written == []  # never sent again behind the lost holder's back


async def test_a_send_whose_holder_started_again_is_interrupted_at_once() -> None:
    claims = claimed_by_host_b(renewed=NOW - 1, boot="b-run-2")  # its spool is published
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.INTERRUPTED
    assert port.results == [Result(SendStatus.UNKNOWN, "interrupted", [])]


async def test_a_decided_result_is_only_acked() -> None:
    claims = claimed_by_host_b(renewed=NOW - 1)
    claims.results["m1"] = contracts.SendResult(
        event_id="m1:result",
        port="lte-9",
        time=contracts.utcnow(),
        id="m1",
        to="+4917612345678",
        status=SendStatus.SENT,
    )
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.ALREADY_SETTLED
    assert port.results == []
    assert handle.calls == [("ack", None)]
    assert claims.shortened == ["m1"]  # acked: its claim is kept the settled window only


async def test_this_agents_own_result_waiting_in_its_spool_settles_the_job() -> None:
    claims = FakeClaims(claims={"m1": "t-a"})
    claims.holders["m1"] = Claim(agent=AGENT, boot=BOOT, port="lte-2", token="t-a", time=NOW - 9)
    port, handle = FakePort([SENT]), FakeJob()
    port.spooled["m1"] = Result(SendStatus.SENT, None, SENT.parts)
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.ALREADY_SETTLED
    assert port.results == [Result(SendStatus.SENT, None, SENT.parts)]  # not `interrupted`
    assert port.written == []


async def test_a_claim_dropped_by_its_holder_meanwhile_is_claimed_anew() -> None:
    claims = FakeClaims(claims={"m1": RELEASED})
    claims.holder = _gone  # type: ignore[method-assign]
    claims.reclaim = _refused  # type: ignore[method-assign]
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False)
    assert ending is Ending.REQUEUED
    assert handle.calls == [("nak", None)]


async def _gone(message_id: str) -> Claim | None:
    raise KeyNotFoundError


async def _refused(message_id: str, claim: Claim) -> bool:
    return False


# --- the bounds that let a settled message leave the bus (RELIABILITY.md) -----------------


async def test_a_copy_taken_up_before_its_connection_was_lost_is_not_claimed() -> None:
    claims = FakeClaims()
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims, connections=[0, 1]).send(handle, job(), pinned=False)
    assert ending is Ending.STALE
    assert claims.claims == {}  # no claim made on it
    assert port.written == []
    assert port.results == []
    assert handle.calls == [("nak", None)]  # JetStream hands out a fresh copy if still due


async def test_a_claim_confirmed_after_the_connection_was_lost_is_dropped_unsent() -> None:
    """The claim's ack came, but the connection the copy was taken up on is gone by then:
    someone else may have been handed the job meanwhile, and its claim may be gone."""
    claims = FakeClaims()
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims, connections=[0, 0, 1]).send(handle, job(), pinned=False)
    assert ending is Ending.STALE
    assert port.written == []  # the gate failed at the prompt: nothing went out
    assert port.results == []
    assert port.dropped == [claims.holders["m1"].token]  # our claim goes again
    assert handle.calls == [("nak", None)]


async def test_a_copy_on_the_connection_it_came_on_is_sent() -> None:
    claims = FakeClaims()
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims, connections=[4]).send(handle, job(), pinned=False)
    assert ending is Ending.SENT
    assert port.written == [1]


@pytest.mark.parametrize("state", sorted(send_path.FINAL))
async def test_a_copy_handed_out_again_after_its_claim_expired_is_settled_by_its_status(
    state: MessageState,
) -> None:
    """Its claim and result were kept only the settled window; its ack was lost, so
    JetStream hands the job out again: the final status says it was settled."""
    claims = FakeClaims()  # the claim is gone
    claims.statuses["m1"] = status("m1", state)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False, deliveries=2)
    assert ending is Ending.ALREADY_SETTLED
    assert port.written == []
    assert claims.claims == {}
    assert handle.calls == [("ack", None)]


async def test_a_first_delivery_reads_no_status() -> None:
    claims = FakeClaims(status_fails=True)  # a status read would fail the send
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False, deliveries=1)
    assert ending is Ending.SENT


@pytest.mark.parametrize("state", [None, MessageState.QUEUED])
async def test_a_copy_handed_out_again_and_never_settled_is_sent(
    state: MessageState | None,
) -> None:
    claims = FakeClaims()
    if state is not None:
        claims.statuses["m1"] = status("m1", state)
    port, handle = FakePort([SENT]), FakeJob()
    ending = await path(port, claims).send(handle, job(), pinned=False, deliveries=3)
    assert ending is Ending.SENT
    assert port.written == [1]


def test_settled_before_needs_a_redelivery_and_a_final_status() -> None:
    assert send_path.settled_before(2, status("m1", MessageState.DELIVERED))
    assert not send_path.settled_before(1, status("m1", MessageState.DELIVERED))
    assert not send_path.settled_before(2, status("m1", MessageState.SENDING))
    assert not send_path.settled_before(2, None)


async def test_the_claim_kept_after_a_result_is_the_one_that_held_the_send() -> None:
    """Once acked, the standing claim is kept the settled window, unchanged: the holder's
    own, or the lost holder's when another agent decided the send."""
    claims = FakeClaims()
    port, handle = FakePort([SENT]), FakeJob()
    assert await path(port, claims).send(handle, job(), pinned=False) is Ending.SENT
    assert port.claims_kept == [claims.holders["m1"]]

    claims = claimed_by_host_b(renewed=NOW - 15 - HOLDER_TIMEOUT - 5, claimed=NOW - 2000)
    port, handle = FakePort([SENT]), FakeJob()
    assert await path(port, claims).send(handle, job(), pinned=False) is Ending.INTERRUPTED
    [kept] = port.claims_kept
    assert kept is not None
    assert kept.agent == "agent-b"  # not this agent's: who held it stays on record
