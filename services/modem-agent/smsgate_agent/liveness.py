"""Who may decide a send: its holder, or, once the holder is surely gone, anyone.

A send is claimed before its first part goes to a modem (the `sms_sending` key of its
message). The claim names its holder: the agent, that agent's run (`boot`, new at every
start) and the port. Every agent renews a lease (`sms_agents`) each heartbeat, and only
while it can hear the server. Another agent that meets the claim, because JetStream
handed the job out again, judges here whether it may decide the send's result. Deciding
means the result `unknown` with the reason `interrupted` (SMPP's message_state UNKNOWN):
the holder's modem may have given the message to the network, and nobody who can still
be asked knows (`agent.resend_interrupted` sends it again instead, at the risk of a
duplicate).

- The claim is this agent's own, from this run, and none of its ports holds the job: the
  send ended without a result, in this process. It is `interrupted`.
- The holder has started again since it claimed (its lease carries another run): the run
  that held the claim is gone, and the new run published whatever its spool kept before
  it renewed its lease. It is `interrupted`.
- The holder's lease is fresh, or stale for less than `holder_timeout`: the holder may
  be alive behind a cut cable and may still report what its modem did. The job is left to
  it (given back with a delay); the message stays `sending`.
- The lease is stale for longer than that: the holder is taken for lost. It is
  `interrupted`, and should the holder come back, its late result loses to this one (the
  result record is created once, see publisher.py): `unknown` is never wrong, and there
  are never two results. A delivery report that comes later still tells the truth.

Pure logic over decoded records and a wall-clock time: tested without NATS.
"""

from __future__ import annotations

import enum

import msgspec
from smsgate.contracts import Lease


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a send claim: who holds it, and since when."""

    agent: str
    boot: str  # the holder's run
    port: str
    token: str  # this handling of the job (a port drops only the claim it made)
    time: float  # wall-clock seconds when it was claimed


class Verdict(enum.Enum):
    HOLDER_DECIDES = "holder decides"  # leave the job to its holder
    INTERRUPTED = "interrupted"  # the holder is gone: the send is `unknown`, `interrupted`


class Judgement(msgspec.Struct, frozen=True):
    verdict: Verdict
    why: str
    holder_silent_since: float | None = None  # when the holder was last heard, if stale


def judge(
    claim: Claim | None,
    lease: Lease | None,
    *,
    agent: str,
    boot: str,
    now: float,
    holder_timeout: float,
) -> Judgement:
    """Whether an agent (`agent`, in its run `boot`) that met `claim` may decide its send.

    `claim` None: unreadable (written by an older version): its holder cannot be known.
    `lease` None: the holder never wrote one (an older version, or a bucket made anew).
    """
    if claim is None:
        return Judgement(Verdict.INTERRUPTED, "the claim names no holder")
    if claim.agent == agent:
        if claim.boot == boot:
            return Judgement(Verdict.INTERRUPTED, "claimed by this agent, no port holds it")
        return Judgement(Verdict.INTERRUPTED, "claimed by an earlier run of this agent")
    if lease is not None and lease.boot != claim.boot:
        return Judgement(Verdict.INTERRUPTED, f"{claim.agent} started again since it claimed")
    heard = max(claim.time, lease.renewed) if lease is not None else claim.time
    alive_for = lease.lease if lease is not None else 0.0
    if now < heard + alive_for:
        return Judgement(Verdict.HOLDER_DECIDES, f"{claim.agent} is alive")
    if now < heard + alive_for + holder_timeout:
        return Judgement(
            Verdict.HOLDER_DECIDES, f"{claim.agent} not heard from", holder_silent_since=heard
        )
    return Judgement(
        Verdict.INTERRUPTED,
        f"{claim.agent} not heard from for {now - heard:.0f}s",
        holder_silent_since=heard,
    )
