"""When a port is live: its state and its agent's lease (smsgate.port_liveness)."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from smsgate import port_liveness
from smsgate.contracts import Lease, PortState, PortStatus

NOW = 1_800_000_000.0
BEAT = 5.0


def state(written_ago: float, *, boot: str | None = "run-1", agent: str = "host-a") -> PortState:
    return PortState(
        port="lte-1",
        agent=agent,
        device="/dev/ttyUSB0",
        status=PortStatus.READY,
        updated=dt.datetime.fromtimestamp(NOW - written_ago, dt.UTC),
        heartbeat_interval=BEAT,
        boot=boot,
    )


def lease(renewed_ago: float, *, boot: str = "run-1", agent: str = "host-a") -> Lease:
    return Lease(agent=agent, boot=boot, renewed=NOW - renewed_ago, lease=15.0)


def test_an_unchanged_state_stands_while_its_agent_renews_its_lease() -> None:
    written_an_hour_ago = state(3600)
    assert port_liveness.is_live(written_an_hour_ago, lease(2), NOW)
    assert port_liveness.heard_at(written_an_hour_ago, lease(2)) == NOW - 2


@pytest.mark.parametrize(
    ("renewed_ago", "live"),
    [(0, True), (14.9, True), (15.0, True), (15.1, False), (600, False)],
)
def test_a_port_is_down_three_heartbeats_after_its_agent_was_last_heard(
    renewed_ago: float, live: bool
) -> None:
    assert port_liveness.is_live(state(3600), lease(renewed_ago), NOW) is live


def test_a_fresh_write_keeps_a_port_live_whatever_the_lease() -> None:
    # Written after the agent's last renewal (a change just before it died): the write
    # counts from its own time, as before.
    assert port_liveness.is_live(state(10), lease(60), NOW)
    assert port_liveness.is_live(state(10), None, NOW)
    assert not port_liveness.is_live(state(16), lease(60), NOW)


@pytest.mark.parametrize(
    "other",
    [
        lease(1, boot="run-2"),  # the agent started again, without this port
        lease(1, agent="host-b"),  # another agent's lease
        None,  # no lease at all (a bucket made anew)
    ],
)
def test_only_the_run_that_wrote_the_state_vouches_for_it(other: Lease | None) -> None:
    assert not port_liveness.is_live(state(60), other, NOW)
    assert port_liveness.heard_at(state(60), other) == NOW - 60


def test_a_state_from_an_earlier_agent_is_judged_by_its_own_write() -> None:
    # An agent before leases kept ports standing rewrites every state each beat and
    # names no run: its lease (if any) says nothing about them.
    assert port_liveness.is_live(state(4, boot=None), None, NOW)
    assert not port_liveness.is_live(state(16, boot=None), lease(1), NOW)


def test_as_seen_reports_when_the_state_was_last_known_current() -> None:
    seen = port_liveness.as_seen(state(3600), lease(2), NOW)
    assert seen.status is PortStatus.READY
    assert seen.updated.timestamp() == NOW - 2
    # The rule earlier readers apply to `updated` themselves agrees with ours.
    assert (NOW - seen.updated.timestamp()) <= 3 * seen.heartbeat_interval


def test_as_seen_shows_a_silent_agents_port_down() -> None:
    seen = port_liveness.as_seen(state(3600), lease(20), NOW)
    assert seen.status is PortStatus.DOWN
    assert seen.updated.timestamp() == NOW - 20
    assert msgspec.structs.replace(seen, status=PortStatus.READY, updated=state(3600).updated) == (
        state(3600)
    )


def test_as_seen_leaves_a_state_that_needs_no_correction_as_it_is() -> None:
    fresh = state(1, boot=None)
    assert port_liveness.as_seen(fresh, None, NOW) is fresh
