"""Everything the agent tells the bus: events, message status, port state, dead letters.

Event ids are derived from the message id, so a job that is handled again after a
crash publishes the same event id and JetStream's duplicate window drops the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from smsgate import contracts, subjects
from smsgate.acks import AckPublisher
from smsgate.bus import CREATE_ONLY, WRONG_LAST_SEQUENCE, Buckets, removal, ttl_headers
from smsgate.config import Config
from smsgate.contracts import Lease

from smsgate_agent.liveness import Claim

log = logging.getLogger("smsgate.agent")

_KINDS: dict[type, str] = {
    contracts.SendResult: "result",
    contracts.DeliveryReport: "report",
    contracts.InboundSms: "inbound",
    contracts.PortEvent: "port",
}


_encode_claim = msgspec.json.Encoder().encode
SKEW = 60.0  # seconds the agents' and the server's clocks may differ (see liveness.py)
# The send result a final stored state stands for (a report's state implies `sent`).
_STATE_RESULTS = {
    contracts.MessageState.SENT: contracts.SendStatus.SENT,
    contracts.MessageState.DELIVERED: contracts.SendStatus.SENT,
    contracts.MessageState.UNDELIVERED: contracts.SendStatus.SENT,
    contracts.MessageState.FAILED: contracts.SendStatus.FAILED,
    contracts.MessageState.UNKNOWN: contracts.SendStatus.UNKNOWN,
}


def late_loser(
    result: contracts.SendResult, status: contracts.MessageStatus | None
) -> contracts.SendResult | None:
    """A late result against the message's stored status: the result decided before it
    when that one is another (the late one must not become a second, contradicting
    result), else None (none was decided, or it was this one: settle it as usual)."""
    decided = _STATE_RESULTS.get(status.state) if status is not None else None
    if status is None or decided is None:
        return None
    if decided is result.status:
        return None
    reason = status.reason if decided is not contracts.SendStatus.SENT else None
    return msgspec.structs.replace(result, status=decided, reason=reason, parts=status.parts)


def _decode_claim(value: bytes | None) -> Claim | None:
    """A claim's holder; None for one this version cannot read (an older agent's token)."""
    try:
        return msgspec.json.decode(value or b"", type=Claim)
    except msgspec.MsgspecError:
        return None


@dataclass
class Publisher:
    nc: Client
    js: JetStreamContext
    buckets: Buckets
    agent: str
    acks: AckPublisher | None = None
    boot: str = field(default_factory=contracts.new_id)  # this run of the agent
    duplicate_window: float = 120.0  # SMS_EVENTS drops a repeated event id for this long
    # how long a settled message keeps its claim and result (Config.settled_ttl)
    settled_ttl: float = field(default_factory=lambda: Config().settled_ttl)
    clock: Callable[[], float] = time.time

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
        """Publish without waiting for the ack: for port changes (the state in the KV is
        written again when its write fails; its event is not)."""
        await self.nc.publish(
            subjects.event(_KINDS[type(event)], event.port),
            contracts.encode(event),
            headers={Header.MSG_ID.value: event.event_id},
        )

    async def settle(
        self,
        result: contracts.SendResult,
        *,
        created: dt.datetime,
        reply_to: str | None,
        tried_since: dt.datetime | None = None,
        digest: str | None = None,
    ) -> contracts.SendResult:
        """Make `result` the message's one result, then publish it: event, message status,
        and the waiting API request if any. When another result was decided first (the
        send's holder was taken for lost), return that one, published once more unless its
        status shows it published: whoever decided it may have failed to publish it.

        `tried_since`: when it was first tried; an attempt whose ack was lost may have
        published the event, and past the stream's duplicate window only looking tells.

        A result older than the settled window (it waited in a spool through a long
        partition) may find the result record gone with its TTL: then the message's
        status says whether another result was decided meanwhile (`late_loser`)."""
        if self.clock() - result.time.timestamp() >= self.settled_ttl - SKEW:
            earlier = late_loser(result, await self.status(result.id))
            if earlier is not None:
                return earlier
        winner = await self.decide(result)
        if winner == result:
            event = tried_since is None or not await self.in_stream(result, tried_since)
            await self.announce(
                result, created=created, reply_to=reply_to, event=event, digest=digest
            )
        else:
            await self.announced(winner, created=created)
        return winner

    async def decide(self, result: contracts.SendResult) -> contracts.SendResult:
        """Create the message's result record; the result that holds it (the first)."""
        key = subjects.result_key(result.id)
        try:
            await self._durable(
                subjects.SENDING_KV_PREFIX + key,
                contracts.encode(result),
                dict(CREATE_ONLY) | ttl_headers(self.settled_ttl),
            )
        except APIError as exc:
            if exc.err_code not in WRONG_LAST_SEQUENCE:
                raise
            decided = await self.decided(result.id)
            if decided is None:  # the record expired with the claim: decide again
                return await self.decide(result)
            return decided
        return result

    async def decided(self, message_id: str) -> contracts.SendResult | None:
        """The message's decided result, if one was decided."""
        try:
            entry = await self.buckets.sending.get(subjects.result_key(message_id))
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not entry.value:
            return None
        return contracts.decode(entry.value, contracts.SendResult)

    async def announce(
        self,
        result: contracts.SendResult,
        *,
        created: dt.datetime,
        reply_to: str | None,
        event: bool = True,
        digest: str | None = None,
    ) -> None:
        """Publish a decided result: the event (unless `event` is False: it is in the
        stream already), the message status, the waiting request."""
        status = contracts.MessageStatus(
            id=result.id,
            to=result.to,
            state=contracts.result_state(result.status),
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
        if event:
            # Both durable, neither depends on the other: one round trip, not two.
            event_failed, status_failed = await self.event_and_status(result, status)
            failure = event_failed or status_failed
            if failure is not None:
                raise failure
        else:
            await self.put_status(status)
        if reply_to:
            await self.nc.publish(reply_to, contracts.encode(result))

    async def announced(self, result: contracts.SendResult, *, created: dt.datetime) -> None:
        """A decided result found again (its job was handed out again): publish it once more
        unless its status shows it published (its publisher may have died in between)."""
        status = await self.status(result.id)
        if status is None or status.state in (
            contracts.MessageState.QUEUED,
            contracts.MessageState.SENDING,
        ):
            event = not await self.in_stream(result, result.time)
            await self.announce(result, created=created, reply_to=None, event=event)

    async def in_stream(self, event: contracts.Event, since: dt.datetime) -> bool:
        """Whether SMS_EVENTS holds `event`: its subject's events since `since` (less a
        minute of clock skew) are looked through by their Nats-Msg-Id. Only inside the
        duplicate window does the stream answer this by itself."""
        window = self.duplicate_window
        if contracts.utcnow() - since < dt.timedelta(seconds=window / 2):
            return False  # publishing again is safe: the stream drops the copy
        sub = await self.js.pull_subscribe(
            subjects.event(_KINDS[type(event)], event.port),
            stream=subjects.EVENTS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=since - dt.timedelta(minutes=1),
                headers_only=True,
                inactive_threshold=30.0,
            ),
        )
        try:
            while (await sub.consumer_info()).num_pending:
                for msg in await sub.fetch(256, timeout=2.0):
                    if (msg.headers or {}).get("Nats-Msg-Id") == event.event_id:
                        return True
            return False
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

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

    async def claim(self, message_id: str, claim: Claim) -> Awaitable[object]:
        """Create the message's send claim now; the awaitable is its ack, which fails with
        `APIError` (err_code in WRONG_LAST_SEQUENCE) when the message was claimed before."""
        return await self._begin(
            subjects.SENDING_KV_PREFIX + subjects.message_key(message_id),
            _encode_claim(claim),
            dict(CREATE_ONLY),
        )

    async def settled(self, message_id: str, claim: Claim | None = None) -> None:
        """Its job settled and acknowledged: keep the message's claim (`claim`, else the
        one standing, read here) only for the settled window from now, unchanged: a copy
        handed out before the ack is acted on only while its connection lasts, and a
        copy handed out again reads the status first. Rewritten without waiting for an
        ack, after the job's ack on the same connection: lost, the claim keeps the
        bucket's TTL (bus.UNSETTLED_CLAIM_TTL), which only costs memory."""
        key = subjects.message_key(message_id)
        if claim is not None:
            value = _encode_claim(claim)
        else:
            try:
                entry = await self.buckets.sending.get(key)
            except Exception:  # gone (nothing to keep shorter), or NATS away
                return
            if not entry.value:
                return
            value = entry.value
        subject = subjects.SENDING_KV_PREFIX + key
        headers = ttl_headers(self.settled_ttl)
        if self.acks is None or not self.acks.publish_unacked_now(subject, value, headers):
            await self._publish_nowait(subject, value, headers)

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
        except (KeyNotFoundError, KeyDeletedError):
            return  # it was never stored
        held = _decode_claim(entry.value)
        if held is not None and held.token == token:
            try:  # only if the key still holds this claim
                await self.remove(subjects.SENDING_KV_PREFIX + key, entry.revision)
            except APIError as exc:
                if exc.err_code not in WRONG_LAST_SEQUENCE:
                    raise

    async def remove(self, subject: str, revision: int | None = None) -> None:
        """Delete the KV key at `subject` (`$KV.<bucket>.<key>`) by a marker that expires
        (bus.removal): a removed key costs the server nothing a minute later."""
        await self._durable(subject, b"", removal(revision))

    async def reclaim(self, message_id: str, claim: Claim) -> bool:
        """After a refused claim: take the key over if it holds only a released claim
        (nats-py's create() does that for a deleted key); False when a claim stands."""
        try:
            await self.buckets.sending.create(
                subjects.message_key(message_id), _encode_claim(claim)
            )
        except KeyWrongLastSequenceError:
            return False
        return True

    async def holder(self, message_id: str) -> Claim | None:
        """The message's standing claim (None: unreadable). Raises KeyNotFoundError when
        the claim is gone (dropped by its holder since)."""
        entry = await self.buckets.sending.get(subjects.message_key(message_id))
        if not entry.value:
            raise KeyNotFoundError
        return _decode_claim(entry.value)

    async def lease(self, agent: str) -> Lease | None:
        """The agent's last lease, if it ever wrote one."""
        try:
            entry = await self.buckets.agents.get(subjects.message_key(agent))
        except (KeyNotFoundError, KeyDeletedError):
            return None
        try:
            return msgspec.json.decode(entry.value or b"", type=Lease)
        except msgspec.MsgspecError:
            return None

    async def renew(self, lease: Lease) -> None:
        """Write this agent's lease, and wait for the server's ack: proof that it hears."""
        await self._durable(
            subjects.AGENTS_KV_PREFIX + subjects.message_key(lease.agent),
            msgspec.json.encode(lease),
            {},
        )

    async def holder_silent(self, message_id: str, claim: Claim, since: float) -> None:
        """The interim status of a send whose holder is not heard from: still `sending`,
        with the reason. Written only over the `sending` status it read, so it never
        hides a result that was published meanwhile."""
        key = subjects.message_key(message_id)
        try:
            entry = await self.buckets.messages.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return
        status = contracts.decode(entry.value or b"", contracts.MessageStatus)
        reason = (
            f"holder {claim.agent} ({claim.port}) not heard from since "
            f"{dt.datetime.fromtimestamp(since, dt.UTC).isoformat(timespec='seconds')}"
        )
        if status.state != contracts.MessageState.SENDING or status.reason == reason:
            return
        update = msgspec.structs.replace(status, reason=reason, updated=contracts.utcnow())
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.buckets.messages.update(key, contracts.encode(update), last=entry.revision)

    def sending(
        self, status: contracts.MessageStatus, sending: contracts.MessageSending
    ) -> list[Coroutine[Any, Any, None]]:
        """Show the message `sending` and tell the history a port took it, asking for no
        ack: nothing depends on either. Framed and sent at once through the ack inbox where
        it can; what could not be is returned as coroutines to run (nats-py's publish)."""
        status_key = subjects.MESSAGES_KV_PREFIX + subjects.message_key(status.id)
        history = {"Nats-Msg-Id": sending.event_id}
        later: list[Coroutine[Any, Any, None]] = []
        for subject, payload, headers in (
            (status_key, contracts.encode(status), {}),
            (subjects.sending(sending.port), contracts.encode(sending), history),
        ):
            if self.acks is None or not self.acks.publish_unacked_now(subject, payload, headers):
                later.append(self._publish_nowait(subject, payload, headers))
        return later

    async def _publish_nowait(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        try:
            await self.nc.publish(subject, payload, headers=headers or None)
        except Exception as exc:  # NATS away: the result's status and event follow anyway
            log.debug("%s not published: %s", subject, exc)

    async def put_status(self, status: contracts.MessageStatus) -> None:
        await self._durable(
            subjects.MESSAGES_KV_PREFIX + subjects.message_key(status.id),
            contracts.encode(status),
            {},
        )

    async def port_state(self, state: contracts.PortState) -> asyncio.Future[Any] | None:
        """Write the port's live state; the ack comes in the returned future (None: no ack
        to be had), for a port's send loop must not wait on the bus twice per message."""
        subject, data = subjects.PORTS_KV_PREFIX + state.port, contracts.encode(state)
        if self.acks is None:
            await self.nc.publish(subject, data)
            return None
        return await self.acks.publish(subject, data, {})

    async def dead_letter(self, subject: str, reason: str, data: bytes) -> None:
        letter = contracts.DeadLetter(
            subject=subject,
            reason=reason,
            data=data.decode("utf-8", errors="replace"),
            time=contracts.utcnow(),
        )
        await self.js.publish(subjects.DEAD_SEND, contracts.encode(letter))
        log.error("dead letter from %s: %s", subject, reason)
