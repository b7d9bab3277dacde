"""Whether a port is live: its state in `sms_ports` and its agent's lease in `sms_agents`.

An agent writes a port's state when it changes, not every heartbeat: at 10,000 ports a
rewrite of every state each beat was 2,000 replicated writes per second for nothing. What
shows that an unchanged state still holds is the agent's lease, which the agent renews
every heartbeat while it hears the server (one write per agent, not per port). A state
names the agent's run (`boot`) that wrote it; while that run's lease is renewed, the state
is current as of the renewal. So a port is heard from at the later of its state's write
and its agent's renewal, and it is down once that is three heartbeat intervals old:
within the same time as when every state was rewritten each beat.

A state without `boot` comes from an earlier agent that still rewrites it every beat
(a rolling upgrade): its write alone says when it was heard from. A lease of another run
(the agent started again without this port) or of another agent says nothing about it.

Every reader judges with these functions: the API's port choice, its port list, the
console and /metrics (through smsgate_api.port_choice), and an agent that meets a port
name held elsewhere. Pure: tested without NATS.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from smsgate.contracts import Lease, PortState, PortStatus

STALE_HEARTBEATS = 3  # intervals without a word before a port is shown down


def vouches(lease: Lease, state: PortState) -> bool:
    """Whether `lease` speaks for `state`: renewed by the agent run that wrote it."""
    return state.boot is not None and lease.boot == state.boot and lease.agent == state.agent


def heard_at(state: PortState, lease: Lease | None) -> float:
    """Wall-clock seconds when the state was last known current: its write, or a later
    renewal of the lease of the run that wrote it."""
    written = state.updated.timestamp()
    if lease is not None and vouches(lease, state):
        return max(written, lease.renewed)
    return written


def live_until(state: PortState, lease: Lease | None) -> float:
    """Wall-clock seconds after which the port is down unless heard from again."""
    return heard_at(state, lease) + STALE_HEARTBEATS * state.heartbeat_interval


def is_live(state: PortState, lease: Lease | None, now: float) -> bool:
    return now <= live_until(state, lease)


def as_seen(state: PortState, lease: Lease | None, now: float) -> PortState:
    """The state as readers show it: `updated` is when it was last known current, and
    the status is `down` once the port was not heard from for three heartbeats.

    A reader that applies the older rule itself (down when `updated` is three intervals
    old, as `smsgate ports` of earlier versions does) comes to the same answer."""
    heard = heard_at(state, lease)
    down = now > heard + STALE_HEARTBEATS * state.heartbeat_interval
    status = PortStatus.DOWN if down else state.status
    if heard == state.updated.timestamp() and status is state.status:
        return state
    updated = dt.datetime.fromtimestamp(heard, dt.UTC)
    return msgspec.structs.replace(state, status=status, updated=updated)
