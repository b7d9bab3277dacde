"""The ledger's pure decisions: which part a report is for, what it makes of its message,
when a message expires, what an unmatched report says."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from smsgate import contracts
from smsgate.contracts import DeliveryState, PartResult
from smsgate.pdu import ReportState, StatusReport
from smsgate_agent import reports
from smsgate_agent.reports import (
    ReportRecord,
    Sim,
    SlotEntry,
    WaitingReport,
    number_digits,
    same_number,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TO = "+4917612345678"
HOUR = dt.timedelta(hours=1)
WINDOW = dt.timedelta(hours=73)
SIM = Sim(port="lte-1", port_number=1, imsi="001010000000001", iccid="8949000000000000001")
READER = Sim(port="lte-9", port_number=9, imsi="001010000000001")


def report(mr: int, status: int = 0, *, to: str = TO, at: dt.datetime = T0) -> StatusReport:
    state = (
        ReportState.DELIVERED
        if status < 0x20
        else ReportState.PENDING
        if status < 0x40
        else ReportState.FAILED
    )
    return StatusReport(
        smsc="+491710760000",
        message_reference=mr,
        recipient=to,
        timestamp=at,
        discharge_time=at + dt.timedelta(seconds=5),
        status=status,
        state=state,
        reason=f"status {status}",
    )


def parts(*refs: int | None) -> list[PartResult]:
    return [PartResult(sequence=i + 1, reference=ref) for i, ref in enumerate(refs)]


def job(message_id: str = "m1", to: str = TO) -> contracts.SendJob:
    return contracts.SendJob(
        id=message_id, to=to, text="hi", user="alice", caller_id="c-" + message_id, created=T0
    )


def record(*refs: int | None, message_id: str = "m1", sent: dt.datetime = T0) -> ReportRecord:
    made = reports.awaiting(job(message_id), parts(*refs), SIM, sent, WINDOW)
    assert made is not None
    return made


def entry(key: str, sent: dt.datetime, to: str = TO, sequence: int = 1) -> SlotEntry:
    return SlotEntry(key, sequence, to, sent)


# --- choosing the part ---------------------------------------------------------------------


def test_the_only_candidate_with_that_recipient_is_chosen() -> None:
    entries = [entry("a", T0)]
    assert reports.choose(entries, report(4), T0 + HOUR, WINDOW) == entries[0]


def test_recipient_national_form_matches_international() -> None:
    entries = [entry("a", T0)]
    assert reports.choose(entries, report(4, to="017612345678"), T0, WINDOW) == entries[0]


def test_other_recipient_with_same_mr_is_not_matched() -> None:
    assert reports.choose([entry("a", T0)], report(4, to="+4915199999999"), T0, WINDOW) is None


def test_wrapped_mr_is_chosen_by_the_smsc_timestamp() -> None:
    early, late = T0, T0 + dt.timedelta(minutes=20)
    entries = [entry("old", early), entry("new", late)]
    now = late + dt.timedelta(minutes=1)
    near_late = report(9, at=late + dt.timedelta(seconds=2))
    near_early = report(9, at=early + dt.timedelta(seconds=1))
    assert reports.choose(entries, near_late, now, WINDOW) == entries[1]
    assert reports.choose(entries, near_early, now, WINDOW) == entries[0]


def test_wrapped_mr_with_a_wrong_smsc_clock_takes_the_oldest() -> None:
    entries = [entry("new", T0 + dt.timedelta(minutes=20)), entry("old", T0)]
    skewed = report(9, at=T0 + dt.timedelta(days=1))
    assert reports.choose(entries, skewed, T0 + dt.timedelta(minutes=30), WINDOW) == entries[1]


def test_parts_outside_the_window_or_sent_after_the_report_are_not_candidates() -> None:
    assert reports.choose([entry("a", T0)], report(1), T0 + WINDOW + HOUR, WINDOW) is None
    later = entry("b", T0 + dt.timedelta(hours=2))
    assert reports.choose([later], report(1), T0, WINDOW) is None


# --- a message's report from its parts -----------------------------------------------------


def test_single_part_delivered_carries_the_callers_fields() -> None:
    updated, event = reports.apply(record(7), 1, report(7), READER, T0 + HOUR)
    assert event is not None
    assert (event.id, event.caller_id, event.user, event.to) == ("m1", "c-m1", "alice", TO)
    assert (event.state, event.status_code, event.reason) == (
        DeliveryState.DELIVERED,
        0,
        "status 0",
    )
    assert event.event_id == "m1:report"
    assert (event.port, event.port_number, event.imsi, event.iccid) == (
        "lte-1",
        1,
        SIM.imsi,
        SIM.iccid,
    )
    assert (event.report_port, event.reference, event.part, event.part_count) == (
        "lte-9",
        7,
        1,
        1,
    )
    assert event.smsc_time == T0 + dt.timedelta(seconds=5)
    assert (event.sent_time, event.smsc_submit_time, event.time) == (T0, T0, T0 + HOUR)
    assert updated.settled
    assert updated.report == event


def test_multipart_delivered_only_when_every_part_is() -> None:
    rec = record(10, 11, 12)
    rec, first = reports.apply(rec, 3, report(12), SIM, T0)
    rec, second = reports.apply(rec, 1, report(10), SIM, T0)
    assert first is None
    assert second is None
    assert not rec.settled
    rec, last = reports.apply(rec, 2, report(11), SIM, T0)
    assert last is not None
    assert (last.state, last.part, last.part_count) == (DeliveryState.DELIVERED, 2, 3)
    assert rec.settled


def test_multipart_fails_as_soon_as_one_part_fails_and_absorbs_the_rest() -> None:
    rec, event = reports.apply(record(10, 11), 2, report(11, 0x41), SIM, T0)
    assert event is not None
    assert (event.state, event.status_code) == (DeliveryState.FAILED, 0x41)
    assert not rec.settled  # part 1 may still report: kept to absorb it
    rec, again = reports.apply(rec, 1, report(10), SIM, T0)
    assert again is None
    assert rec.settled


def test_a_temporary_status_changes_nothing() -> None:
    rec = record(3)
    updated, event = reports.apply(rec, 1, report(3, 0x21), SIM, T0)
    assert updated is rec
    assert event is None


def test_validity_expired_at_the_smsc_is_expired() -> None:
    _, event = reports.apply(record(3), 1, report(3, 0x46), SIM, T0)
    assert event is not None
    assert (event.state, event.status_code) == (DeliveryState.EXPIRED, 0x46)


def test_parts_without_a_reference_are_not_awaited() -> None:
    assert reports.awaiting(job(), parts(None), SIM, T0, WINDOW) is None
    failed = [PartResult(sequence=1, reference=4, error="+CMS ERROR: 38")]
    assert reports.awaiting(job(), failed, SIM, T0, WINDOW) is None
    rec = record(None, 8)
    assert [(p.sequence, p.reference) for p in rec.parts] == [(2, 8)]
    assert rec.results == parts(None, 8)  # the status keeps what the send said
    assert rec.due == T0 + WINDOW


# --- expiry and unmatched ------------------------------------------------------------------


def test_expired_says_how_long_it_waited() -> None:
    rec, event = reports.expire(record(3, 4), T0 + WINDOW)
    assert (event.state, event.status_code, event.part_count) == (DeliveryState.EXPIRED, 0, 2)
    assert event.reason == "no delivery report within 3d 1h"
    assert (event.report_port, event.reference, event.part, event.smsc_time) == (
        None,
        None,
        None,
        None,
    )
    assert rec.report == event
    status = reports.status(rec, event, "agent-b")
    assert (status.state, status.delivery, status.agent) == (
        contracts.MessageState.UNDELIVERED,
        DeliveryState.EXPIRED,
        "agent-b",
    )
    assert (status.caller_id, status.user, status.created) == ("c-m1", "alice", T0)


def test_unmatched_carries_everything_the_report_did_under_a_stable_id() -> None:
    waiting = WaitingReport.of(report(42, 0x41), READER, T0)
    event = reports.unmatched(waiting, T0 + HOUR)
    again = reports.unmatched(WaitingReport.of(report(42, 0x41), READER, T0 + HOUR), T0 + HOUR)
    assert event.id == again.id
    assert event.id.startswith("r")
    assert len(event.id) == 21
    assert event.event_id == f"{event.id}:report"
    assert (event.state, event.to, event.reference, event.status_code, event.reason) == (
        DeliveryState.UNMATCHED,
        TO,
        42,
        0x41,
        "status 65",
    )
    assert (event.port, event.imsi, event.report_port, event.caller_id) == (
        "lte-9",
        READER.imsi,
        "lte-9",
        None,
    )
    assert event.smsc_submit_time == T0
    assert event.smsc_time == T0 + dt.timedelta(seconds=5)
    other = WaitingReport.of(report(43, 0x41), READER, T0)
    assert other.digest != waiting.digest


def test_a_waiting_report_round_trips_through_its_stored_form() -> None:
    waiting = WaitingReport.of(report(5, 0x21), READER, T0)
    stored = msgspec.json.decode(msgspec.json.encode(waiting), type=WaitingReport)
    assert stored.report() == report(5, 0x21)


def test_sim_keys_prefer_imsi_then_iccid_then_the_port() -> None:
    assert Sim(port="a", imsi="001", iccid="894").key == "i001"
    assert Sim(port="a", iccid="894").key == "c894"
    assert Sim(port="lte-2").key == "p-lte-2"


def test_due_labels_end_the_slice_their_time_falls_in() -> None:
    due = dt.datetime.fromtimestamp(1000.5, dt.UTC)
    assert reports.due_label(due, 30) == 1020
    assert reports.due_label(dt.datetime.fromtimestamp(1020, dt.UTC), 30) == 1020
    assert reports.due_label(due, 1) == 1001


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0s"), (90, "1min 30s"), (73 * 3600, "3d 1h"), (5, "5s")],
)
def test_duration(seconds: int, said: str) -> None:
    assert reports.duration(dt.timedelta(seconds=seconds)) == said


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("+4917612345678", "017612345678", True),
        ("+4917612345678", "004917612345678", True),
        ("+4917612345678", "4917612345678", True),
        ("+4917612345678", "+4917612345679", False),
        ("10086", "10086", True),
        ("10086", "+8610086", False),  # short codes must match exactly
        ("+1 (555) 010-0001", "15550100001", True),
        ("Vodafone", "vodafone", True),
    ],
)
def test_same_number(a: str, b: str, same: bool) -> None:
    assert same_number(a, b) is same


def test_number_digits() -> None:
    assert number_digits("+49 176 1234") == "491761234"
    assert number_digits("0049 176") == "49176"
    assert number_digits("0176") == "176"
