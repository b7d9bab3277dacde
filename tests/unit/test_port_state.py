"""Which port changes are events (smsgate_agent.port_state.state_change)."""

from __future__ import annotations

import pytest
from smsgate.contracts import PortStatus
from smsgate_agent.port_state import Quiet, state_change

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
