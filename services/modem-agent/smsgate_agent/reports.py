"""Status reports matched to the parts they report on, and one report per message.

A status report names only an 8-bit message reference (TP-MR), the recipient and two SMSC
times. The MR wraps every 256 sends, so a report is matched by (SIM, MR, recipient, time):
among the parts of that SIM awaiting a report with that MR and recipient, the one sent
closest to the SMSC's timestamp.

What a message awaits is kept on the bus (smsgate_agent.ledger), not in an agent's memory.
This module is the pure part: the records, and every decision about them (which part a
report is for, what a report makes of its message, when a message expires, what an
unmatched report says), with the clock passed in.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import re

import msgspec
from smsgate import contracts
from smsgate.contracts import DeliveryReport, DeliveryState, PartResult
from smsgate.pdu import ReportState, StatusReport

VALIDITY_EXPIRED = 0x46  # TP-ST: the SMSC gave up when the validity period ran out

# How far an SMSC clock may be off ours and still be believed when choosing between parts
# that share an MR. Beyond it the oldest open part wins (reports come roughly in order).
CLOCK_TRUST = dt.timedelta(hours=1)


# --- numbers -----------------------------------------------------------------------------

_NOT_DIGITS = re.compile(r"[^0-9]+")


@functools.lru_cache(maxsize=4096)  # every report compares its recipient with each candidate
def number_digits(number: str) -> str:
    """The significant digits of a number: no `+`, no international or trunk prefix."""
    digits = _NOT_DIGITS.sub("", number)
    if number.strip().startswith("00"):
        digits = digits[2:]
    return digits.lstrip("0")


def same_number(a: str, b: str, *, min_digits: int = 7) -> bool:
    """Whether two forms of a number are the same line: `+4917612345678` is `017612345678`.

    One form may carry a country code the other lacks, so the shorter must end the longer;
    numbers shorter than `min_digits` (short codes) must match exactly.
    """
    da, db = number_digits(a), number_digits(b)
    if not da or not db:
        return a.strip().lower() == b.strip().lower()  # alphanumeric
    if da == db:
        return True
    short, long = (da, db) if len(da) <= len(db) else (db, da)
    return len(short) >= min_digits and long.endswith(short)


# --- the records -------------------------------------------------------------------------


class Sim(msgspec.Struct, frozen=True, kw_only=True):
    """A port and the SIM in it, as a message went out or a report came in."""

    port: str
    port_number: int | None = None
    imsi: str | None = None
    iccid: str | None = None

    @property
    def key(self) -> str:
        """What identifies the SIM in ledger keys: its IMSI, else its ICCID, else (no
        identity read) the port, which still survives a restart but not a move."""
        if self.imsi:
            return f"i{self.imsi}"
        if self.iccid:
            return f"c{self.iccid}"
        return f"p-{self.port}"


class AwaitedPart(msgspec.Struct, frozen=True, kw_only=True):
    sequence: int
    reference: int  # TP-MR, 0-255
    state: ReportState = ReportState.PENDING
    status: int | None = None  # TP-ST once a final report came


class ReportRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A message awaiting its report, with what its report event will need."""

    id: str
    caller_id: str | None = None
    user: str = ""
    to: str
    created: dt.datetime  # the job's, for the message status
    sent: dt.datetime
    due: dt.datetime  # `expired` from then on
    sim: Sim
    parts: list[AwaitedPart]
    results: list[PartResult] = msgspec.field(default_factory=list)  # the send's, for status
    # Once decided: the report published (or about to be); the record stays only while
    # parts of it may still report (a part failed first) so their reports are absorbed.
    report: DeliveryReport | None = None

    def part(self, sequence: int) -> AwaitedPart | None:
        for part in self.parts:
            if part.sequence == sequence:
                return part
        return None

    @property
    def settled(self) -> bool:
        """Decided, and no part will report any more: nothing left to keep."""
        return self.report is not None and all(
            p.state is not ReportState.PENDING for p in self.parts
        )


class SlotEntry(msgspec.Struct, frozen=True, array_like=True):
    """One part awaiting a report, filed under its SIM and TP-MR."""

    record: str  # the key of its message's record
    sequence: int
    to: str
    sent: dt.datetime


class WaitingReport(msgspec.Struct, frozen=True, kw_only=True):
    """A report read before (or without) a record to match: kept until one shows up, or
    published `unmatched`. `claim` says who is acting on it, so only one does."""

    reader: Sim  # the port and SIM that read it
    seen: dt.datetime
    smsc: str | None = None
    reference: int
    recipient: str
    timestamp: dt.datetime
    discharge_time: dt.datetime
    status: int
    state: ReportState
    reason: str
    claim: str = ""  # "", "match" or "unmatched"
    claimed: dt.datetime | None = None  # when, by the claimer's clock

    @classmethod
    def of(cls, report: StatusReport, reader: Sim, seen: dt.datetime) -> WaitingReport:
        return cls(
            reader=reader,
            seen=seen,
            smsc=report.smsc,
            reference=report.message_reference,
            recipient=report.recipient,
            timestamp=report.timestamp,
            discharge_time=report.discharge_time,
            status=report.status,
            state=report.state,
            reason=report.reason,
        )

    def report(self) -> StatusReport:
        return StatusReport(
            smsc=self.smsc,
            message_reference=self.reference,
            recipient=self.recipient,
            timestamp=self.timestamp,
            discharge_time=self.discharge_time,
            status=self.status,
            state=self.state,
            reason=self.reason,
        )

    @property
    def digest(self) -> str:
        """Stable over the same report read twice (the SIM and what the SMSC said)."""
        said = (
            f"{self.reader.key}|{self.reference}|{self.recipient}|"
            f"{self.timestamp.isoformat()}|{self.discharge_time.isoformat()}|{self.status}"
        )
        return hashlib.sha256(said.encode()).hexdigest()[:20]


# --- decisions ---------------------------------------------------------------------------


def awaiting(
    job: contracts.SendJob,
    parts: list[PartResult],
    sim: Sim,
    sent: dt.datetime,
    timeout: dt.timedelta,
) -> ReportRecord | None:
    """The record of a message just sent; None when no part can be matched (no TP-MR)."""
    awaited = [
        AwaitedPart(sequence=p.sequence, reference=p.reference & 0xFF)
        for p in parts
        if p.reference is not None and p.error is None
    ]
    if not awaited:
        return None
    return ReportRecord(
        id=job.id,
        caller_id=job.caller_id,
        user=job.user,
        to=job.to,
        created=job.created,
        sent=sent,
        due=sent + timeout,
        sim=sim,
        parts=awaited,
        results=parts,
    )


def choose(
    entries: list[SlotEntry], report: StatusReport, now: dt.datetime, window: dt.timedelta
) -> SlotEntry | None:
    """The part a report is for, among those filed under its SIM and MR: same recipient,
    sent before the report was read and within the window; the one sent closest to the
    SMSC's timestamp if that clock is believable, else the oldest."""
    candidates = [
        entry
        for entry in entries
        if entry.sent - CLOCK_TRUST <= now
        and now - entry.sent <= window
        and same_number(entry.to, report.recipient)
    ]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None

    def distance(entry: SlotEntry) -> dt.timedelta:
        return abs(report.timestamp - entry.sent)

    closest = min(candidates, key=distance)
    if distance(closest) <= CLOCK_TRUST:
        return closest
    return min(candidates, key=lambda entry: entry.sent)


def apply(
    record: ReportRecord, sequence: int, report: StatusReport, reader: Sim, now: dt.datetime
) -> tuple[ReportRecord, DeliveryReport | None]:
    """The record after one part's final report, and the message's report if this one
    decides it: the first failed part, or the last part delivered."""
    if report.state is ReportState.PENDING:
        return record, None  # the SMSC is still trying; a final report follows
    parts = [
        msgspec.structs.replace(p, state=report.state, status=report.status)
        if p.sequence == sequence and p.state is ReportState.PENDING
        else p
        for p in record.parts
    ]
    updated = msgspec.structs.replace(record, parts=parts)
    if record.report is not None:
        return updated, None  # decided before: absorbed
    failed = report.state is ReportState.FAILED
    if not failed and any(p.state is not ReportState.DELIVERED for p in parts):
        return updated, None
    if not failed:
        state = DeliveryState.DELIVERED
    elif report.status == VALIDITY_EXPIRED:
        state = DeliveryState.EXPIRED
    else:
        state = DeliveryState.FAILED
    event = _event(
        record,
        now,
        state=state,
        reason=report.reason,
        status_code=report.status,
        smsc_time=report.discharge_time,
        reference=report.message_reference,
        part=sequence,
        smsc_submit_time=report.timestamp,
        report_port=reader.port,
    )
    return msgspec.structs.replace(updated, report=event), event


def expire(record: ReportRecord, now: dt.datetime) -> tuple[ReportRecord, DeliveryReport]:
    """An undecided record past its due time: decided `expired`."""
    waited = record.due - record.sent
    event = _event(
        record,
        now,
        state=DeliveryState.EXPIRED,
        reason=f"no delivery report within {duration(waited)}",
    )
    return msgspec.structs.replace(record, report=event), event


def unmatched(waiting: WaitingReport, now: dt.datetime) -> DeliveryReport:
    """The event of a report that no record claimed: everything it carried."""
    report_id = "r" + waiting.digest
    return DeliveryReport(
        event_id=f"{report_id}:report",
        port=waiting.reader.port,
        port_number=waiting.reader.port_number,
        imsi=waiting.reader.imsi,
        iccid=waiting.reader.iccid,
        time=now,
        id=report_id,
        to=waiting.recipient,
        state=DeliveryState.UNMATCHED,
        reason=waiting.reason,
        status_code=waiting.status,
        smsc_time=waiting.discharge_time,
        reference=waiting.reference,
        smsc_submit_time=waiting.timestamp,
        report_port=waiting.reader.port,
    )


def status(record: ReportRecord, report: DeliveryReport, agent: str) -> contracts.MessageStatus:
    """The message's status once its report is decided."""
    delivered = report.state is DeliveryState.DELIVERED
    return contracts.MessageStatus(
        id=record.id,
        to=record.to,
        state=contracts.MessageState.DELIVERED if delivered else contracts.MessageState.UNDELIVERED,
        port=record.sim.port,
        agent=agent,
        reason=None if delivered else report.reason,
        parts=record.results,
        delivery=report.state,
        caller_id=record.caller_id,
        user=record.user,
        created=record.created,
        updated=report.time,
    )


def due_label(due: dt.datetime, width: float) -> int:
    """The sweep bucket of a due time: the epoch second that ends its `width`-second slice,
    so every record in bucket `label` is due by `label`."""
    return int(math.ceil(due.timestamp() / width) * width)


def duration(span: dt.timedelta) -> str:
    """A readable length of time: `3d 1h`, `90s`."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    said = " ".join(f"{n}{unit}" for n, unit in units if n)
    return said or "0s"


def _event(
    record: ReportRecord,
    now: dt.datetime,
    *,
    state: DeliveryState,
    reason: str,
    status_code: int = 0,
    smsc_time: dt.datetime | None = None,
    reference: int | None = None,
    part: int | None = None,
    smsc_submit_time: dt.datetime | None = None,
    report_port: str | None = None,
) -> DeliveryReport:
    return DeliveryReport(
        event_id=f"{record.id}:report",
        port=record.sim.port,
        port_number=record.sim.port_number,
        imsi=record.sim.imsi,
        iccid=record.sim.iccid,
        time=now,
        id=record.id,
        caller_id=record.caller_id,
        to=record.to,
        state=state,
        reason=reason,
        status_code=status_code,
        smsc_time=smsc_time,
        user=record.user,
        reference=reference,
        part=part,
        part_count=len(record.parts),
        sent_time=record.sent,
        smsc_submit_time=smsc_submit_time,
        report_port=report_port,
    )
