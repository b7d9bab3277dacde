"""A message and its timeline as the history shows them (API, CLI, exports)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import msgspec

Direction = Literal["out", "in"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NOT_DIGITS = re.compile(r"[^0-9]")


def micros(when: dt.datetime) -> int:
    """A time as stored: microseconds since the epoch (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    span = when - _EPOCH  # exact integer arithmetic: no float on the way
    return (span.days * 86400 + span.seconds) * 1_000_000 + span.microseconds


def from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


def number_key(number: str) -> str:
    """What a number is searched by: its digits (`+49 151-234` -> `49151234`), so the same
    number matches however it was written; an alphanumeric sender by itself, lower-cased."""
    digits = _NOT_DIGITS.sub("", number)
    return digits if digits else number.strip().lower()


class HistoryMessage(msgspec.Struct, kw_only=True):
    """One message sent (`out`) or received (`in`), in its latest state."""

    id: str
    direction: Direction
    number: str  # the other party: the recipient of `out`, the sender of `in`
    text: str | None  # None when the store saw the message only after its text was gone
    # out: queued, sending, sent, failed, unknown, delivered, undelivered, expired;
    # in: received
    state: str
    created: dt.datetime  # accepted (out) or received (in)
    updated: dt.datetime
    user: str = ""
    caller_id: str | None = None
    port: str | None = None
    port_number: int | None = None
    sim: str | None = None  # the SIM's IMSI
    agent: str | None = None
    reason: str | None = None  # why it failed, or why its outcome is unknown
    status_report: bool | None = None  # a delivery report was asked for
    parts: int | None = None
    report: str | None = None  # the delivery report's state: delivered, failed, expired, ...
    report_reason: str | None = None
    report_code: int | None = None  # TP-ST of the deciding part
    report_time: dt.datetime | None = None
    smsc_time: dt.datetime | None = None  # SCTS (in) or the report's discharge time (out)
    smsc: str | None = None
    complete: bool | None = None  # in: False when parts were still missing


class TimelineStep(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One step of a message's life: queued, sending, sent (one per part), failed,
    unknown, delivered / failed / expired (the report), or received."""

    time: dt.datetime
    step: str
    port: str | None = None
    part: int | None = None
    reference: int | None = None  # the part's TP-MR
    reason: str | None = None
    status_code: int | None = None


class MessagePage(msgspec.Struct, kw_only=True):
    messages: list[HistoryMessage]
    next: str | None = None  # pass as `cursor` for the next (older) page
