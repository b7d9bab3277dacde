"""Status reports matched to the parts they report on, and summed up per message.

A status report names only an 8-bit message reference (TP-MR), the recipient and two SMSC
times. The MR wraps every 256 sends, so a report is matched by (MR, recipient, time): among
the open parts with that MR and recipient, the one sent closest to the SMSC's timestamp.
Pure logic: the caller passes the clock in, as a datetime or as epoch seconds.

Message references are per modem: keep one book per modem.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from smsgate.contracts import DeliveryState, PartResult
from smsgate.pdu import ReportState, StatusReport

VALIDITY_EXPIRED = 0x46  # TP-ST: the SMSC gave up when the validity period ran out

# How far an SMSC clock may be off ours and still be believed when choosing between parts
# that share an MR. Beyond it the oldest open part wins (reports come roughly in order).
CLOCK_TRUST = dt.timedelta(hours=1)
# A report may overtake the bookkeeping of its own message (multipart sends): it waits.
ORPHAN_TTL = dt.timedelta(minutes=10)

Time = dt.datetime | float  # an aware datetime, or seconds since the epoch (time.time())


def _at(value: Time) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(value, dt.UTC)


@dataclass(frozen=True, slots=True)
class MessageDelivery:
    """The delivery outcome of one message, decided once from the reports of its parts."""

    message_id: str
    to: str
    state: DeliveryState
    status: int  # TP-ST of the deciding part
    reason: str
    discharge_time: dt.datetime | None  # when the SMSC delivered or gave up
    parts: int  # parts that carried a reference and were tracked


@dataclass(slots=True)
class _Part:
    message: _Message
    sequence: int
    reference: int
    state: ReportState = ReportState.PENDING
    status: int | None = None


@dataclass(slots=True)
class _Message:
    message_id: str
    to: str
    digits: str
    sent_at: dt.datetime
    parts: list[_Part] = field(default_factory=list)
    decided: bool = False


_NOT_DIGITS = re.compile(r"[^0-9]+")


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
    return _same_digits(a, number_digits(a), b, number_digits(b), min_digits)


def _same_digits(a: str, da: str, b: str, db: str, min_digits: int = 7) -> bool:
    if not da or not db:
        return a.strip().lower() == b.strip().lower()  # alphanumeric
    if da == db:
        return True
    short, long = (da, db) if len(da) <= len(db) else (db, da)
    return len(short) >= min_digits and long.endswith(short)


class ReportBook:
    """Parts waiting for their status reports, and the messages they belong to."""

    def __init__(
        self,
        *,
        window: dt.timedelta = dt.timedelta(days=3),
        max_orphans: int = 10_000,
    ) -> None:
        self._window = window  # how long a part waits for its report
        self._max_orphans = max_orphans
        self._messages: OrderedDict[str, _Message] = OrderedDict()
        self._by_reference: dict[int, list[_Part]] = {}
        self._orphans: OrderedDict[int, tuple[StatusReport, dt.datetime]] = OrderedDict()
        self._orphan_seq = 0

    def __len__(self) -> int:
        """Messages still tracked (decided ones stay until they expire, to absorb late reports)."""
        return len(self._messages)

    @property
    def orphans(self) -> int:
        return len(self._orphans)

    def expect(
        self, message_id: str, to: str, parts: Iterable[PartResult], sent_at: Time
    ) -> MessageDelivery | None:
        """Track a sent message's parts; returns its outcome if waiting reports decide it.

        Parts without a reference (the modem gave no `+CMGS: <mr>`) cannot be matched and
        are left out; a message with none is not tracked.
        """
        self._drop(message_id)
        digits = number_digits(to)
        message = _Message(message_id, to, digits, _at(sent_at))
        for part in parts:
            if part.reference is None or part.error is not None:
                continue
            tracked = _Part(message, part.sequence, part.reference & 0xFF)
            message.parts.append(tracked)
            self._by_reference.setdefault(tracked.reference, []).append(tracked)
        if not message.parts:
            return None
        self._messages[message_id] = message
        return self._retry_orphans(message)

    def match(self, report: StatusReport, now: Time) -> MessageDelivery | None:
        """Apply one report; returns the message's outcome when this report decides it."""
        now = _at(now)
        part = self._find(report, now)
        if part is None:
            self._keep_orphan(report, now)
            return None
        return self._apply(part, report)

    def expire(self, now: Time) -> list[str]:
        """Forget messages older than the window; returns the ids of those never decided."""
        now = _at(now)
        undecided: list[str] = []
        while self._messages:
            message = next(iter(self._messages.values()))
            if now - message.sent_at < self._window:
                break
            self._drop(message.message_id)
            if not message.decided:
                undecided.append(message.message_id)
        for key, (_, seen) in list(self._orphans.items()):
            if now - seen >= ORPHAN_TTL:
                del self._orphans[key]
        return undecided

    def _find(self, report: StatusReport, now: dt.datetime) -> _Part | None:
        recipient = report.recipient
        digits = number_digits(recipient)
        candidates = [
            part
            for part in self._by_reference.get(report.message_reference & 0xFF, ())
            if part.state is ReportState.PENDING
            and part.message.sent_at - CLOCK_TRUST <= now
            and now - part.message.sent_at <= self._window
            and _same_digits(part.message.to, part.message.digits, recipient, digits)
        ]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]

        def distance(part: _Part) -> dt.timedelta:
            return abs(report.timestamp - part.message.sent_at)

        closest = min(candidates, key=distance)
        if distance(closest) <= CLOCK_TRUST:
            return closest
        return min(candidates, key=lambda part: part.message.sent_at)

    def _apply(self, part: _Part, report: StatusReport) -> MessageDelivery | None:
        if report.state is ReportState.PENDING:
            return None  # the SMSC is still trying; a final report follows
        part.state = report.state
        part.status = report.status
        message = part.message
        if message.decided:
            return None
        failed = report.state is ReportState.FAILED
        if not failed and any(p.state is not ReportState.DELIVERED for p in message.parts):
            return None
        message.decided = True
        if failed:
            state = (
                DeliveryState.EXPIRED if report.status == VALIDITY_EXPIRED else DeliveryState.FAILED
            )
        else:
            state = DeliveryState.DELIVERED
        return MessageDelivery(
            message.message_id,
            message.to,
            state,
            report.status,
            report.reason,
            report.discharge_time,
            len(message.parts),
        )

    def _keep_orphan(self, report: StatusReport, now: dt.datetime) -> None:
        self._orphan_seq += 1
        self._orphans[self._orphan_seq] = (report, now)
        while len(self._orphans) > self._max_orphans:
            self._orphans.popitem(last=False)

    def _retry_orphans(self, message: _Message) -> MessageDelivery | None:
        references = {part.reference for part in message.parts}
        outcome: MessageDelivery | None = None
        for key, (report, seen) in list(self._orphans.items()):
            if report.message_reference & 0xFF not in references:
                continue
            part = self._find(report, seen)
            if part is None or part.message is not message:
                continue
            del self._orphans[key]
            outcome = self._apply(part, report) or outcome
        return outcome

    def _drop(self, message_id: str) -> None:
        message = self._messages.pop(message_id, None)
        if message is None:
            return
        for part in message.parts:
            siblings = self._by_reference.get(part.reference)
            if siblings is None:
                continue
            siblings[:] = [p for p in siblings if p is not part]
            if not siblings:
                del self._by_reference[part.reference]
