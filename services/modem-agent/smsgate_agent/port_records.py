"""What a port tells the bus about a message: its `sending` record, its one send result
and its stored status. Pure builders: the port worker publishes them."""

from __future__ import annotations

from dataclasses import dataclass

from smsgate import contracts
from smsgate.contracts import MessageState, MessageStatus, SendJob


@dataclass(frozen=True, slots=True)
class PortIdentity:
    """The port as a message's records name it: at the moment they are written."""

    port: str
    port_number: int | None
    agent: str
    imsi: str | None


def sending_record(job: SendJob, at: PortIdentity) -> contracts.MessageSending:
    """The history's `sending` step: this port took the message."""
    return contracts.MessageSending(
        event_id=f"{job.id}:sending:{contracts.new_id()[:12]}",
        port=at.port,
        port_number=at.port_number,
        imsi=at.imsi,
        time=contracts.utcnow(),
        id=job.id,
        to=job.to,
        agent=at.agent,
        user=job.user,
        caller_id=job.caller_id,
    )


def send_result(
    job: SendJob,
    at: PortIdentity,
    status: contracts.SendStatus,
    reason: str | None,
    parts: list[contracts.PartResult],
) -> contracts.SendResult:
    """The message's one send result; its event id is the message's, so a repeat is one."""
    return contracts.SendResult(
        event_id=f"{job.id}:result",
        port=at.port,
        port_number=at.port_number,
        imsi=at.imsi,
        time=contracts.utcnow(),
        id=job.id,
        caller_id=job.caller_id,
        to=job.to,
        status=status,
        reason=reason,
        parts=parts,
        user=job.user,
    )


def message_status(job: SendJob, at: PortIdentity, state: MessageState) -> MessageStatus:
    """The message's stored status while this port has it (queued again, or sending)."""
    return MessageStatus(
        id=job.id,
        to=job.to,
        state=state,
        port=at.port,
        agent=at.agent,
        caller_id=job.caller_id,
        user=job.user,
        created=job.created,
        digest=contracts.text_digest(job.text),
        updated=contracts.utcnow(),
    )
