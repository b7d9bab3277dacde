"""The third send status, `unknown`: what every reader makes of a send result."""

from __future__ import annotations

import datetime as dt

from smsgate import contracts
from smsgate.contracts import MessageState, SendStatus
from smsgate_agent.metrics import PortReading, render_ports


def test_every_send_status_leaves_its_own_stored_state() -> None:
    states = {status: contracts.result_state(status) for status in SendStatus}
    assert states == {
        SendStatus.SENT: MessageState.SENT,
        SendStatus.FAILED: MessageState.FAILED,
        SendStatus.UNKNOWN: MessageState.UNKNOWN,
    }


def test_an_unknown_result_is_read_back_as_it_was_written() -> None:
    result = contracts.SendResult(
        event_id="m1:result",
        port="lte-1",
        time=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
        id="m1",
        to="+4915112345678",
        status=SendStatus.UNKNOWN,
        reason="interrupted",
    )
    data = contracts.encode(result)
    assert b'"status":"unknown"' in data
    assert contracts.decode_event(data) == result
    assert contracts.SCHEMA_VERSION == 1  # a new value, no field renamed or removed


def test_agent_metrics_count_unknown_outcomes_per_port() -> None:
    state = contracts.PortState(
        port="lte-1",
        agent="a",
        device="/dev/x",
        status=contracts.PortStatus.READY,
        sent=5,
        failed=1,
        unknown=2,
        updated=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
    )
    text = render_ports([PortReading(state=state, reports={}, at_errors=0, restarts=0)])
    assert 'smsgate_agent_unknown_total{port="lte-1"} 2' in text
    assert 'smsgate_agent_failed_total{port="lte-1"} 1' in text
