"""Delivery reports of what one port sent: matched to their messages, published once.

The matching itself (references, numbers, multi-part messages, reports that beat the
last `+CMGS`) is the `ReportBook`'s (smsgate_agent.reports); this turns what it decides
into a `DeliveryReport` event and the message's final status.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from smsgate import contracts
from smsgate.pdu import StatusReport

from smsgate_agent.publisher import Publisher
from smsgate_agent.reports import MessageDelivery, ReportBook

log = logging.getLogger("smsgate.agent")

DELIVERY_STATE = {
    "delivered": contracts.DeliveryState.DELIVERED,
    "failed": contracts.DeliveryState.FAILED,
    "expired": contracts.DeliveryState.EXPIRED,
}


@dataclass
class _Sent:
    """What a delivery report needs to know about a sent message."""

    job: contracts.SendJob
    parts: list[contracts.PartResult]


class DeliveryReports:
    """One port's sent messages awaiting a report, and the reports that settle them."""

    def __init__(
        self,
        name: str,
        number: int | None,
        publisher: Publisher,
        *,
        imsi: Callable[[], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.number = number  # the gateway API's port number
        self.publisher = publisher
        self._imsi = imsi
        self.clock = clock
        self.reports = ReportBook()
        self.awaiting_report: dict[str, _Sent] = {}
        self.published: collections.Counter[str] = collections.Counter()  # by report state

    async def expect(
        self, job: contracts.SendJob, parts: list[contracts.PartResult], now: float
    ) -> None:
        """A message sent at `now` asked for a report."""
        self.awaiting_report[job.id] = _Sent(job, parts)
        # A report can beat the last +CMGS; the book then decides right here.
        early = self.reports.expect(job.id, job.to, parts, now)
        if early is not None:
            await self._publish_report(early)

    async def on_report(self, report: StatusReport) -> None:
        delivery = self.reports.match(report, self.clock())
        if delivery is not None:
            await self._publish_report(delivery)

    async def _publish_report(self, delivery: MessageDelivery) -> None:
        sent = self.awaiting_report.pop(delivery.message_id, None)
        if sent is None:
            return
        job = sent.job
        state = DELIVERY_STATE.get(delivery.state, contracts.DeliveryState.FAILED)
        now = contracts.utcnow()
        report = contracts.DeliveryReport(
            event_id=f"{job.id}:report",
            port=self.name,
            port_number=self.number,
            imsi=self._imsi(),
            time=now,
            id=job.id,
            caller_id=job.caller_id,
            to=job.to,
            state=state,
            reason=delivery.reason,
            status_code=delivery.status,
            smsc_time=delivery.discharge_time,
            user=job.user,
        )
        # The status this agent wrote when the message was sent, moved on by the report:
        # built here rather than read back from the KV, and sent beside the event.
        status = contracts.MessageStatus(
            id=job.id,
            to=job.to,
            state=contracts.MessageState.DELIVERED
            if state == contracts.DeliveryState.DELIVERED
            else contracts.MessageState.UNDELIVERED,
            port=self.name,
            agent=self.publisher.agent,
            parts=sent.parts,
            delivery=state,
            caller_id=job.caller_id,
            user=job.user,
            created=job.created,
            digest=contracts.text_digest(job.text),
            updated=now,
        )
        event_failed, status_failed = await self.publisher.event_and_status(report, status)
        if event_failed is not None:
            raise event_failed
        self.published[state.value] += 1
        if status_failed is not None:
            log.warning("%s: status of %s not updated: %s", self.name, job.id, status_failed)
