"""What the agent owes the bus: results, reports and inbound SMS it could not publish yet.

A send result goes to the spool first (the modem has acted; the result must survive the
process), then is settled on the bus (publisher.settle: decided once, then published).
When the bus cannot take it, the port carries on and the result waits in the spool,
with its job held unacknowledged; `replay` settles it when the bus is back, and so does
the agent's next run after a restart. Reports, inbound SMS and the dropping of a claim
whose message reached no network are spooled only when they could not be published.
Nothing is dropped: an entry leaves the spool once the bus has it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

import msgspec
from smsgate import contracts

from smsgate_agent.liveness import Claim
from smsgate_agent.publisher import Publisher
from smsgate_agent.send_path import JobHandle
from smsgate_agent.spool import Entry, Spool

log = logging.getLogger("smsgate.agent")


class SpooledResult(msgspec.Struct, frozen=True):
    result: contracts.SendResult
    created: dt.datetime
    reply_to: str | None = None
    digest: str | None = None  # the text's (see contracts.text_digest)


class SpooledReport(msgspec.Struct, frozen=True):
    report: contracts.DeliveryReport
    status: contracts.MessageStatus


def _result_entry(message_id: str) -> str:
    """The spool key of a message's result: its event id (see port.py)."""
    return f"{message_id}:result"


class Backlog:
    def __init__(self, publisher: Publisher, spool: Spool) -> None:
        self.publisher = publisher
        self.spool = spool
        self.held: dict[str, JobHandle] = {}  # jobs whose result waits here, acked once settled
        self.settling: set[str] = set()  # entries a port is settling now: not replayed

    def __len__(self) -> int:
        return len(self.spool)

    async def result(
        self,
        result: contracts.SendResult,
        *,
        created: dt.datetime,
        reply_to: str | None,
        handle: JobHandle | None,
        digest: str | None = None,
        claim: Claim | None = None,
    ) -> contracts.SendResult | None:
        """Keep `result`, settle it, ack its job (and keep its claim, `claim` if known,
        the settled window from then). The result that was decided (another one when this
        one came too late), or None: it waits here for the bus."""
        tried_since = None
        spooled = msgspec.json.encode(SpooledResult(result, created, reply_to, digest))
        if not self.spool.add(result.event_id, "result", spooled):  # tried before
            earlier = self.spool.get(result.event_id)
            tried_since = _utc(earlier.stored) if earlier is not None else None
        self.settling.add(result.event_id)
        try:
            winner = await self.publisher.settle(
                result,
                created=created,
                reply_to=reply_to,
                tried_since=tried_since,
                digest=digest,
            )
        except Exception as exc:
            if handle is not None:
                self.held[result.event_id] = handle
            log.warning("result of %s kept in the spool until the bus takes it: %s", result.id, exc)
            return None
        finally:
            self.settling.discard(result.event_id)
        self.spool.remove(result.event_id)
        if handle is not None:
            await handle.ack()
            await self.publisher.settled(result.id, claim)
        return winner

    def pending(self, message_id: str) -> SpooledResult | None:
        """A result of `message_id` waiting here, if any."""
        entry = self.spool.get(_result_entry(message_id))
        if entry is None:
            return None
        return msgspec.json.decode(entry.body, type=SpooledResult)

    async def settle_pending(self, message_id: str, handle: JobHandle | None) -> bool:
        """Settle a result of `message_id` waiting here (its job came back); whether one
        waited. One the bus still refuses stays here, its job held until `replay` settles
        it: the job must not be judged anew while this agent's own outcome of it waits."""
        spooled = self.pending(message_id)
        if spooled is None:
            return False
        await self.result(
            spooled.result,
            created=spooled.created,
            reply_to=spooled.reply_to,
            handle=handle,
            digest=spooled.digest,
        )
        return True

    async def unclaim(self, message_id: str, token: str) -> None:
        """Drop a claim whose message reached no network, now or (kept here) once the bus
        is back: left standing, it would make the message `unknown` (`interrupted`)."""
        try:
            await self.publisher.unclaim(message_id, token)
        except Exception as exc:
            self.spool.put(f"{message_id}:unclaim", "unclaim", token.encode())
            log.warning("claim of %s to be dropped once the bus takes it: %s", message_id, exc)

    async def event(self, event: contracts.Event) -> None:
        """Publish an event (an inbound SMS), or keep it here when the bus cannot take it."""
        try:
            await self.publisher.event(event)
        except Exception as exc:
            self.spool.put(event.event_id, _kind(event), contracts.encode(event))
            log.warning("%s kept in the spool until the bus takes it: %s", event.event_id, exc)

    async def report(
        self, report: contracts.DeliveryReport, status: contracts.MessageStatus
    ) -> None:
        """Publish a delivery report with the status it moves on, or keep both here."""
        try:
            event_failed, status_failed = await self.publisher.event_and_status(report, status)
        except Exception as exc:  # not even sent: the connection is down
            event_failed = status_failed = exc
        if event_failed is None and status_failed is None:
            return
        self.spool.put(
            report.event_id, "report", msgspec.json.encode(SpooledReport(report, status))
        )
        log.warning(
            "report of %s kept in the spool until the bus takes it: %s",
            report.id,
            event_failed or status_failed,
        )

    async def replay(self) -> int:
        """Publish what waits here, oldest first, until the bus refuses; what still waits."""
        for entry in self.spool.entries():
            if entry.key in self.settling:
                continue  # its port is at it
            try:
                await self._publish(entry)
            except Exception as exc:
                log.info("spool: %d entries wait for the bus (%s)", len(self.spool), exc)
                break
        return len(self.spool) - len(self.settling)

    async def _publish(self, entry: Entry) -> None:
        if entry.kind == "result":
            spooled = msgspec.json.decode(entry.body, type=SpooledResult)
            handle = self.held.pop(entry.key, None)
            try:
                winner = await self.publisher.settle(
                    spooled.result,
                    created=spooled.created,
                    reply_to=spooled.reply_to,
                    tried_since=_utc(entry.stored),
                    digest=spooled.digest,
                )
            except Exception:
                if handle is not None:
                    self.held[entry.key] = handle
                raise
            if winner != spooled.result:
                log.error(
                    "message %s: %s (from the spool) came after %s %s was decided; not published",
                    spooled.result.id,
                    spooled.result.status.value,
                    winner.status.value,
                    winner.reason or "",
                )
            if handle is not None:
                with contextlib.suppress(Exception):
                    await handle.ack()
                    await self.publisher.settled(spooled.result.id)
        elif entry.kind == "unclaim":
            await self.publisher.unclaim(entry.key.removesuffix(":unclaim"), entry.body.decode())
        elif entry.kind == "report":
            spooled_report = msgspec.json.decode(entry.body, type=SpooledReport)
            if await self.publisher.in_stream(spooled_report.report, _utc(entry.stored)):
                await self.publisher.put_status(spooled_report.status)
            else:
                failed = await self.publisher.event_and_status(
                    spooled_report.report, spooled_report.status
                )
                for failure in failed:
                    if failure is not None:
                        raise failure
        else:
            event = contracts.decode_event(entry.body)
            if not await self.publisher.in_stream(event, _utc(entry.stored)):
                await self.publisher.event(event)
        self.spool.remove(entry.key)
        log.info("spool: %s published", entry.key)


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _kind(event: contracts.Event) -> str:
    return "inbound" if isinstance(event, contracts.InboundSms) else "event"
