"""Which port changes are events, and when a port's state is written
(smsgate_agent.port_state)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from smsgate.contracts import PortEvent, PortState, PortStatus, utcnow
from smsgate_agent.port_state import PortStateWriter, Quiet, state_change
from smsgate_agent.publisher import Publisher

SIM_A, SIM_B = "001010000000001", "001010000000002"


@pytest.mark.parametrize(
    ("last", "status", "change"),
    [
        (PortStatus.READY, PortStatus.BUSY, Quiet.ROUTINE),
        (PortStatus.BUSY, PortStatus.READY, Quiet.ROUTINE),
        (None, PortStatus.READY, "ready"),  # the first state ever written is an event
        (PortStatus.READY, PortStatus.DOWN, "down"),
        (PortStatus.BUSY, PortStatus.PARKED, "parked"),
        (PortStatus.DISABLED, PortStatus.READY, "ready"),
        (PortStatus.READY, PortStatus.READY, None),
    ],
)
def test_only_a_busy_ready_flip_is_routine(
    last: PortStatus | None, status: PortStatus, change: str | Quiet | None
) -> None:
    assert state_change(last, SIM_A, status, SIM_A) == change


def test_a_sim_swapped_in_is_an_event_a_sim_first_read_is_not() -> None:
    assert state_change(PortStatus.READY, SIM_A, PortStatus.READY, SIM_B) == "sim changed"
    assert state_change(PortStatus.READY, None, PortStatus.READY, SIM_A) is None
    # A status change says more than the SIM: the event names the status.
    assert state_change(PortStatus.READY, SIM_A, PortStatus.DOWN, SIM_B) == "down"


class Bus:
    """What the writer tells the bus, and the acks the test decides."""

    def __init__(self) -> None:
        self.states: list[PortState] = []
        self.events: list[str] = []
        self.acks: list[asyncio.Future[object]] = []

    async def port_state(self, state: PortState) -> asyncio.Future[object]:
        self.states.append(state)
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]

    async def event_nowait(self, event: PortEvent) -> None:
        self.events.append(event.change)


class Port:
    def __init__(self) -> None:
        self.status, self.sent = PortStatus.READY, 0

    def state(self) -> PortState:
        return PortState(
            port="lte-1",
            agent="host-a",
            device="/dev/ttyUSB0",
            status=self.status,
            imsi=SIM_A,
            sent=self.sent,
            updated=utcnow(),
            boot="run-1",
        )


def writer() -> tuple[PortStateWriter, Bus, Port]:
    bus, port = Bus(), Port()
    publisher = cast(Publisher, bus)
    return (
        PortStateWriter("lte-1", publisher, lambda: port.status, lambda: SIM_A, port.state),
        bus,
        port,
    )


async def test_a_heartbeat_writes_nothing_while_nothing_changed() -> None:
    states, bus, _ = writer()
    await states.publish()  # the first state: written, an event
    bus.acks[-1].set_result(None)
    for _ in range(10):
        await states.beat()
    assert len(bus.states) == 1
    assert bus.events == ["ready"]


async def test_a_heartbeat_writes_what_changed_beside_the_status() -> None:
    states, bus, port = writer()
    await states.publish()
    port.sent = 1  # a counter: no event, written at the next beat
    await states.beat()
    await states.beat()
    assert [s.sent for s in bus.states] == [0, 1]
    assert bus.events == ["ready"]


async def test_a_write_the_server_did_not_take_is_written_again() -> None:
    states, bus, _ = writer()
    await states.publish()
    bus.acks[-1].set_exception(TimeoutError("no ack from JetStream"))
    await asyncio.sleep(0)  # the ack's callback
    await states.beat()
    assert len(bus.states) == 2
    bus.acks[-1].set_result(None)
    await asyncio.sleep(0)
    await states.beat()
    assert len(bus.states) == 2


async def test_an_earlier_write_failing_after_a_later_one_changes_nothing() -> None:
    states, bus, port = writer()
    await states.publish()
    port.sent = 1
    await states.beat()
    bus.acks[1].set_result(None)
    bus.acks[0].set_exception(TimeoutError("no ack from JetStream"))
    await asyncio.sleep(0)
    await states.beat()
    assert len(bus.states) == 2


async def test_refresh_and_forget_write_an_unchanged_state() -> None:
    states, bus, _ = writer()
    await states.publish()
    await states.beat(refresh=True)
    states.forget()  # the server was away: it may have lost what it had
    await states.beat()
    assert len(bus.states) == 3
    assert bus.events == ["ready"]  # rewrites are not events


async def test_a_busy_ready_flip_is_written_at_the_flush_without_an_event() -> None:
    states, bus, port = writer()
    await states.publish()
    port.status = PortStatus.BUSY
    await states.publish()
    assert states.dirty
    assert len(bus.states) == 1
    await states.flush()
    assert [s.status for s in bus.states] == [PortStatus.READY, PortStatus.BUSY]
    port.status = PortStatus.DOWN
    await states.publish()
    assert bus.events == ["ready", "down"]
