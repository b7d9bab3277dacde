"""Caller ids the history store remembers after the bus has forgotten them.

A message's status stays in `sms_messages` for `nats.messages_ttl` only (an hour by
default), and JetStream drops a repeated job within SMS_SEND's duplicate window (an
hour). A caller's id sent again after that finds neither; the history store keeps every
message for `history.retention_days`, so a request whose id is new to the bus asks it
before queueing: an id it knows is a repeat, answered with what the store knows, never
a second job (queue.py, `JobQueue._claim`).
"""

from __future__ import annotations

from collections.abc import Sequence

from smsgate import contracts
from smsgate.contracts import MessageState, MessageStatus
from smsgate.history import search
from smsgate.history.database import Database
from smsgate.history.records import HistoryMessage

# The store's states that are not a message state: a report that expired (it was sent).
_STATES = {"expired": MessageState.SENT}


def status_of(record: HistoryMessage) -> MessageStatus:
    """What the store knows of a sent message, as the status the bus would have kept."""
    state = _STATES.get(record.state) or MessageState(record.state)
    return MessageStatus(
        id=record.id,
        to=record.number,
        state=state,
        port=record.port,
        agent=record.agent,
        reason=record.reason,
        caller_id=record.caller_id,
        user=record.user,
        created=record.created,
        updated=record.updated,
        digest=contracts.text_digest(record.text) if record.text is not None else None,
    )


async def remembered(db: Database, ids: Sequence[str]) -> dict[str, MessageStatus]:
    """The ids among `ids` the store knows as sent messages, with their status, asked
    in one query and of every user's messages (ids are one namespace, whoever sent
    them). Raises StoreError when the store cannot say."""
    found = await search.messages(db, ids)
    return {key: status_of(record) for key, record in found.items() if record.direction == "out"}
