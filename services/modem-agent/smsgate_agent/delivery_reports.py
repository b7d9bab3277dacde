"""Delivery reports of what one port sent: filed in the ledger, and matched through it.

What a report needs is kept on the bus (smsgate_agent.ledger), not in this process, so
a report is matched wherever and whenever its SIM reads it; the decisions themselves
(which part, which message, when it expires) are smsgate_agent.reports'.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from smsgate import contracts
from smsgate.config import AgentConfig
from smsgate.pdu import StatusReport

from smsgate_agent import reports
from smsgate_agent.ledger import Ledger, LedgerSettings
from smsgate_agent.send_path import until_done


def ledger_settings(agent: AgentConfig) -> LedgerSettings:
    return LedgerSettings(
        timeout=dt.timedelta(seconds=agent.report_timeout),
        unmatched_after=dt.timedelta(seconds=agent.report_unmatched_after),
        sweep=agent.report_sweep,
    )


class DeliveryReports:
    """One port's side of the ledger: what it sent, and the reports its SIM reads."""

    def __init__(self, ledger: Ledger, sim: Callable[[], reports.Sim]) -> None:
        self.ledger = ledger
        self._sim = sim  # the port and the SIM in it now

    async def expect(
        self, job: contracts.SendJob, parts: list[contracts.PartResult], now: float
    ) -> None:
        """A message sent at `now` asked for a report: on record once this returns."""
        sent = dt.datetime.fromtimestamp(now, dt.UTC)
        record = reports.awaiting(job, parts, self._sim(), sent, self.ledger.settings.timeout)
        if record is None:
            return  # no part carried a TP-MR: nothing a report could be matched to
        # Its result waits for this: giving up would leave a sent message `unknown`.
        await until_done(lambda: self.ledger.record(record), f"report record of {job.id}")
        # A report that overtook the last +CMGS was parked: it matches now.
        await self.ledger.retry_parked(record.sim)

    async def on_report(self, report: StatusReport) -> None:
        """Called by the modem; returns once the report is matched or kept on the bus."""
        await self.ledger.take(report, self._sim())

    @property
    def published(self) -> Mapping[str, int]:
        """Reports of this port's messages this agent published, by state."""
        return self.ledger.published_for(self._sim().port)
