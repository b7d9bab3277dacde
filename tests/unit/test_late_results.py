"""A result that waited past the settled window against the message's stored status:
it never becomes a second, contradicting result (publisher.late_loser)."""

from __future__ import annotations

import pytest
from smsgate import contracts
from smsgate.contracts import MessageState, MessageStatus, PartResult, SendResult, SendStatus
from smsgate_agent.publisher import late_loser


def result(status: SendStatus, reason: str | None = None) -> SendResult:
    return SendResult(
        event_id="m1:result",
        port="lte-1",
        time=contracts.utcnow(),
        id="m1",
        to="+4917612345678",
        status=status,
        reason=reason,
        parts=[PartResult(sequence=1, reference=4)] if status is SendStatus.SENT else [],
    )


def stored(state: MessageState, reason: str | None = None) -> MessageStatus:
    now = contracts.utcnow()
    return MessageStatus(
        id="m1", to="+4917612345678", state=state, reason=reason, created=now, updated=now
    )


@pytest.mark.parametrize("state", [None, MessageState.QUEUED, MessageState.SENDING])
def test_a_late_result_of_a_message_nobody_decided_is_settled(state: MessageState | None) -> None:
    status = stored(state) if state is not None else None
    assert late_loser(result(SendStatus.SENT), status) is None


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (MessageState.SENT, SendStatus.SENT),
        (MessageState.DELIVERED, SendStatus.SENT),  # a report came after it
        (MessageState.UNDELIVERED, SendStatus.SENT),
        (MessageState.FAILED, SendStatus.FAILED),
        (MessageState.UNKNOWN, SendStatus.UNKNOWN),
    ],
)
def test_a_late_result_that_was_published_before_is_settled_as_usual(
    state: MessageState, status: SendStatus
) -> None:
    """Its own earlier publish (say the event's ack was lost): settled again, the same."""
    assert late_loser(result(status), stored(state)) is None


def test_a_late_sent_after_its_holder_was_taken_for_lost_loses_to_unknown() -> None:
    late = result(SendStatus.SENT)
    winner = late_loser(late, stored(MessageState.UNKNOWN, "interrupted"))
    assert winner is not None
    assert winner.status is SendStatus.UNKNOWN
    assert winner.reason == "interrupted"
    assert winner.id == late.id
    assert winner != late


def test_a_late_failure_loses_to_a_delivered_message() -> None:
    winner = late_loser(result(SendStatus.FAILED, "+CMS ERROR: 38"), stored(MessageState.DELIVERED))
    assert winner is not None
    assert winner.status is SendStatus.SENT
    assert winner.reason is None
