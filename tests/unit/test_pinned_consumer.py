"""The agent's consumer for pinned jobs: what start-up makes of the stream's consumers,
and how a pinned job is queued, sent back or failed (consumers.py, pinned_jobs.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from smsgate import contracts, subjects
from smsgate.contracts import PortStatus
from smsgate_agent import consumers, pinned_jobs
from smsgate_agent.agent import until_answered
from smsgate_agent.consumers import Consumer, Plan, plan
from smsgate_agent.pinned_jobs import DEPTH, PinnedWork

ANY = Consumer(subjects.SEND_ANY_CONSUMER, frozenset({subjects.SEND_ANY}))


def agent_consumer(agent: str, *ports: str) -> Consumer:
    return Consumer(subjects.send_agent_consumer(agent), consumers.filters_of(ports))


def test_a_first_start_creates_the_agents_consumer() -> None:
    assert plan("a", ["lte-1", "lte-2"], [ANY]) == Plan(create=True)


def test_the_same_ports_keep_the_consumer() -> None:
    assert plan("a", ["lte-2", "lte-1"], [ANY, agent_consumer("a", "lte-1", "lte-2")]) == Plan(
        keep=True
    )


def test_other_ports_make_the_consumer_anew() -> None:
    # Widening a filter in place would skip the added port's older jobs.
    for ports in (["lte-1", "lte-2", "lte-3"], ["lte-1"]):
        steps = plan("a", ports, [agent_consumer("a", "lte-1", "lte-2")])
        assert steps == Plan(delete=("send-agent-a",), create=True)


def test_the_previous_versions_consumers_of_its_ports_are_deleted() -> None:
    old = [Consumer(subjects.send_port_consumer(p), frozenset()) for p in ("lte-1", "lte-9")]
    steps = plan("a", ["lte-1", "lte-2"], [ANY, *old])
    assert steps == Plan(delete=("send-port-lte-1",), create=True)  # lte-9: another host's


def test_a_port_taken_over_leaves_the_other_agents_consumer() -> None:
    others = [agent_consumer("b", "lte-2", "lte-7"), agent_consumer("c", "lte-3")]
    steps = plan("a", ["lte-1", "lte-2", "lte-3"], others)
    assert steps.narrow == (agent_consumer("b", "lte-7"),)
    assert steps.delete == ("send-agent-c",)  # nothing left: no filter is every subject
    assert steps.create


def test_an_agent_without_ports_drops_its_consumer() -> None:
    assert plan("a", [], [agent_consumer("a", "lte-1")]) == Plan(delete=("send-agent-a",))


def test_an_agent_name_must_name_a_consumer() -> None:
    with pytest.raises(ValueError, match=r"invalid agent name 'host\.a'"):
        subjects.send_agent_consumer("host.a")


def test_the_full_delay_grows_and_stops_growing() -> None:
    delays = [pinned_jobs.full_delay(n) for n in range(100)]
    assert delays == sorted(delays)
    assert delays[0] == pinned_jobs.FULL_DELAY
    assert delays[-1] == pinned_jobs.FULL_DELAY_MAX


class FakeMsg:
    def __init__(self, port: str, job: contracts.SendJob) -> None:
        self.subject = subjects.send_port(port)
        self.data = contracts.encode(job)
        self.job = job
        self.acts: list[tuple[str, float | None]] = []

    async def nak(self, delay: float | None = None) -> None:
        self.acts.append(("nak", delay))

    async def in_progress(self) -> None:
        self.acts.append(("progress", None))


class FakePort:
    def __init__(self, name: str, status: PortStatus) -> None:
        self.name = name
        self.pinned: deque[Msg] = deque()
        self._status = status
        self.pokes = 0
        self.failed: list[str] = []

    def status(self) -> PortStatus:
        return self._status

    def poke(self) -> None:
        self.pokes += 1

    async def fail_unavailable(self, msg: Msg, job: contracts.SendJob) -> None:
        self.failed.append(job.id)

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        raise AssertionError(reason)


def pinned_job(port: str, *, age: float = 0.0, port_wait: float = 60.0) -> contracts.SendJob:
    return contracts.SendJob(
        id=contracts.new_id(),
        to="+4915112345678",
        text="hi",
        port=port,
        port_wait=port_wait,
        created=contracts.utcnow() - dt.timedelta(seconds=age),
    )


def work(ports: list[FakePort]) -> PinnedWork:
    return PinnedWork(
        cast(Client, object()),
        subjects.SEND_STREAM,
        "send-agent-a",
        {p.name: p for p in ports},
        asyncio.Event(),
        ack_wait=3.0,
    )


async def deliver(pinned: PinnedWork, msg: FakeMsg) -> None:
    await pinned._on_job(cast(Msg, msg))


async def test_a_busy_port_queues_its_jobs_in_order_up_to_its_depth() -> None:
    busy = FakePort("lte-1", PortStatus.BUSY)
    pinned = work([busy])
    assert pinned.room() == DEPTH
    msgs = [FakeMsg("lte-1", pinned_job("lte-1")) for _ in range(DEPTH + 2)]
    for msg in msgs:
        await deliver(pinned, msg)
    assert [cast(FakeMsg, m) for m in busy.pinned] == msgs[:DEPTH]
    assert pinned.room() == 0
    # Beyond its room: back to the stream, later the longer the port stays full.
    extra = [m.acts for m in msgs[DEPTH:]]
    assert all(len(acts) == 1 and acts[0][0] == "nak" for acts in extra)
    await pinned._keep_alive()
    assert all(m.acts == [("progress", None)] for m in msgs[:DEPTH])
    busy.pinned.popleft()
    pinned.taken(cast(Any, busy))
    assert pinned.room() == 1


async def test_a_port_that_cannot_send_fails_overdue_jobs_and_sends_back_the_rest() -> None:
    down = FakePort("lte-1", PortStatus.DOWN)
    pinned = work([down])
    assert pinned.room() == DEPTH  # asked for, to be judged
    overdue = FakeMsg("lte-1", pinned_job("lte-1", age=10.0, port_wait=5.0))
    fresh = FakeMsg("lte-1", pinned_job("lte-1"))
    await deliver(pinned, overdue)
    await deliver(pinned, fresh)
    assert down.failed == [overdue.job.id]
    assert fresh.acts == [("nak", pinned_jobs.SWEEP_EVERY)]
    assert not down.pinned


async def test_the_queue_of_a_port_gone_down_is_judged_at_the_sweep() -> None:
    port = FakePort("lte-1", PortStatus.BUSY)
    pinned = work([port])
    stale = FakeMsg("lte-1", pinned_job("lte-1", age=10.0, port_wait=5.0))
    waiting = FakeMsg("lte-1", pinned_job("lte-1"))
    await deliver(pinned, stale)
    await deliver(pinned, waiting)
    port._status = PortStatus.DOWN
    await pinned._sweep()
    assert not port.pinned
    assert port.failed == [stale.job.id]
    assert waiting.acts == [("nak", pinned_jobs.SWEEP_EVERY)]


async def test_a_job_for_a_port_not_held_here_goes_back() -> None:
    pinned = work([FakePort("lte-1", PortStatus.READY)])
    stray = FakeMsg("lte-5", pinned_job("lte-5"))
    await deliver(pinned, stray)
    assert stray.acts == [("nak", pinned_jobs.SWEEP_EVERY)]


async def test_a_start_up_step_is_tried_again_while_the_server_does_not_answer() -> None:
    """Twenty agents of 500 ports starting at once kept a loaded 3-node cluster from
    answering an API request in 5 s, and the agent exited; it waits instead."""
    tries: list[int] = []

    async def listing() -> list[str]:
        tries.append(1)
        if len(tries) < 2:
            raise NatsTimeoutError
        return ["lte-1.x"]

    assert await until_answered(listing, "inbound parts") == ["lte-1.x"]
    assert len(tries) == 2


async def test_a_start_up_step_that_fails_otherwise_is_not_hidden() -> None:
    async def refused() -> None:
        raise ValueError("bad config")

    with pytest.raises(ValueError, match="bad config"):
        await until_answered(refused, "streams")
