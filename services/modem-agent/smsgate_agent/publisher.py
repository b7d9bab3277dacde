"""Everything the agent tells the bus: events, message status, port state, dead letters.

Event ids are derived from the message id, so a job that is handled again after a
crash publishes the same event id and JetStream's duplicate window drops the copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from smsgate import contracts, subjects
from smsgate.acks import AckPublisher
from smsgate.bus import CREATE_ONLY, WRONG_LAST_SEQUENCE, Buckets

log = logging.getLogger("smsgate.agent")

_KINDS: dict[type, str] = {
    contracts.SendResult: "result",
    contracts.DeliveryReport: "report",
    contracts.InboundSms: "inbound",
    contracts.PortEvent: "port",
}


@dataclass
class Publisher:
    nc: Client
    js: JetStreamContext
    buckets: Buckets
    agent: str
    acks: AckPublisher | None = None

    async def event(self, event: contracts.Event) -> None:
        """Publish durably (waits for the JetStream ack)."""
        await self._durable(
            subjects.event(_KINDS[type(event)], event.port),
            contracts.encode(event),
            {Header.MSG_ID.value: event.event_id},
        )

    async def _durable(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await (await self._begin(subject, payload, headers))

    async def _begin(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> Awaitable[object]:
        """Send now; the returned awaitable is the ack (or the whole publish, without acks)."""
        if self.acks is None:
            return self.js.publish(subject, payload, headers=headers or None)
        # The shared ack inbox costs no inbox, timer or JSON parse of its own per publish.
        return await self.acks.publish(subject, payload, headers)

    async def event_and_status(
        self, event: contracts.Event, status: contracts.MessageStatus
    ) -> tuple[Exception | None, Exception | None]:
        """Both durably, in one round trip and without a task each; what each failed with."""
        pending = [
            await self._begin(
                subjects.event(_KINDS[type(event)], event.port),
                contracts.encode(event),
                {Header.MSG_ID.value: event.event_id},
            ),
            await self._begin(
                subjects.MESSAGES_KV_PREFIX + subjects.message_key(status.id),
                contracts.encode(status),
                {},
            ),
        ]
        outcomes: list[Exception | None] = []
        for ack in pending:
            try:
                await ack
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes[0], outcomes[1]

    async def event_nowait(self, event: contracts.Event) -> None:
        """Publish without waiting for the ack: for port changes, which the next beat repeats."""
        await self.nc.publish(
            subjects.event(_KINDS[type(event)], event.port),
            contracts.encode(event),
            headers={Header.MSG_ID.value: event.event_id},
        )

    async def result(
        self,
        result: contracts.SendResult,
        *,
        created: dt.datetime,
        reply_to: str | None,
        digest: str | None = None,
    ) -> None:
        """The send result: event, message status, and the waiting API request if any.

        `digest`: the text's `contracts.text_digest`, kept in the status so that a repeated
        id with another text is still told apart once the message is sent."""
        state = (
            contracts.MessageState.SENT
            if result.status == contracts.SendStatus.SENT
            else contracts.MessageState.FAILED
        )
        status = contracts.MessageStatus(
            id=result.id,
            to=result.to,
            state=state,
            port=result.port,
            agent=self.agent,
            reason=result.reason,
            parts=result.parts,
            caller_id=result.caller_id,
            user=result.user,
            created=created,
            updated=contracts.utcnow(),
            digest=digest,
        )
        # Both durable, neither depends on the other: one round trip, not two.
        event_failed, status_failed = await self.event_and_status(result, status)
        failure = event_failed or status_failed
        if failure is not None:
            raise failure
        if reply_to:
            await self.nc.publish(reply_to, contracts.encode(result))

    async def status(self, message_id: str) -> contracts.MessageStatus | None:
        """The message's stored status; None when there is none. Raises when NATS cannot say.

        "Unknown" must not pass for "never sent": the at-most-once marker lives here.
        """
        try:
            entry = await self.buckets.messages.get(subjects.message_key(message_id))
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not entry.value:
            return None
        try:
            return contracts.decode(entry.value, contracts.MessageStatus)
        except msgspec.MsgspecError:
            log.warning("unreadable status for %s", message_id)
            return None

    async def claim(self, message_id: str, token: str) -> Awaitable[object]:
        """Create the message's send claim (holding `token`) now; the awaitable is its ack,
        which fails with `APIError` (err_code in WRONG_LAST_SEQUENCE) when the message was
        claimed before."""
        return await self._begin(
            subjects.SENDING_KV_PREFIX + subjects.message_key(message_id),
            token.encode(),
            dict(CREATE_ONLY),
        )

    @staticmethod
    def is_taken(exc: BaseException) -> bool:
        """Whether `exc` is a claim refused because the message was claimed before."""
        return isinstance(exc, APIError) and exc.err_code in WRONG_LAST_SEQUENCE

    async def unclaim(self, message_id: str, token: str) -> None:
        """Drop the claim if it is still the one holding `token`: its message reached no
        network (or its ack was lost at the prompt), so the job may be sent again."""
        key = subjects.message_key(message_id)
        try:
            entry = await self.buckets.sending.get(key)
        except KeyNotFoundError:
            return  # it was never stored
        if entry.value == token.encode():
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self.buckets.sending.delete(key, last=entry.revision)

    async def reclaim(self, message_id: str, token: str) -> bool:
        """After a refused claim: take the key over if it holds only a released claim
        (nats-py's create() does that for a deleted key); False when a claim stands."""
        try:
            await self.buckets.sending.create(subjects.message_key(message_id), token.encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def status_nowait(self, status: contracts.MessageStatus) -> None:
        """Write a status that nothing depends on (`sending`) without waiting for its ack."""
        try:
            await self.nc.publish(
                subjects.MESSAGES_KV_PREFIX + subjects.message_key(status.id),
                contracts.encode(status),
            )
        except Exception as exc:  # NATS away: the result's status follows anyway
            log.debug("status of %s not written: %s", status.id, exc)

    async def journal_nowait(self, sending: contracts.MessageSending) -> None:
        """Tell the history a port took the message, without waiting: nothing depends on it."""
        try:
            await self.nc.publish(
                subjects.sending(sending.port),
                contracts.encode(sending),
                headers={"Nats-Msg-Id": sending.event_id},
            )
        except Exception as exc:  # NATS away: the history shows the result without it
            log.debug("sending record of %s not published: %s", sending.id, exc)

    async def put_status(self, status: contracts.MessageStatus) -> None:
        await self._durable(
            subjects.MESSAGES_KV_PREFIX + subjects.message_key(status.id),
            contracts.encode(status),
            {},
        )

    async def port_state(self, state: contracts.PortState) -> None:
        """Write the port's live state without waiting for the ack: every beat rewrites it,
        and a port's send loop must not wait on the bus twice per message for it."""
        await self.nc.publish(subjects.PORTS_KV_PREFIX + state.port, contracts.encode(state))

    async def dead_letter(self, subject: str, reason: str, data: bytes) -> None:
        letter = contracts.DeadLetter(
            subject=subject,
            reason=reason,
            data=data.decode("utf-8", errors="replace"),
            time=contracts.utcnow(),
        )
        await self.js.publish(subjects.DEAD_SEND, contracts.encode(letter))
        log.error("dead letter from %s: %s", subject, reason)
