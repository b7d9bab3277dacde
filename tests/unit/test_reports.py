"""Matching status reports to sent parts, and one delivery outcome per message."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smsgate.contracts import DeliveryState, PartResult
from smsgate.pdu import ReportState, StatusReport
from smsgate_agent.reports import ORPHAN_TTL, ReportBook, number_digits, same_number

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TO = "+4917612345678"


def report(
    mr: int,
    status: int = 0,
    *,
    to: str = TO,
    at: dt.datetime = T0,
) -> StatusReport:
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


def test_single_part_delivered() -> None:
    book = ReportBook()
    assert book.expect("m1", TO, parts(7), T0) is None
    outcome = book.match(report(7), T0 + dt.timedelta(seconds=3))
    assert outcome is not None
    assert outcome.message_id == "m1"
    assert outcome.state is DeliveryState.DELIVERED
    assert outcome.status == 0
    assert outcome.discharge_time == T0 + dt.timedelta(seconds=5)


def test_multipart_delivered_only_when_every_part_is() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(10, 11, 12), T0)
    now = T0 + dt.timedelta(seconds=10)
    assert book.match(report(12), now) is None
    assert book.match(report(10), now) is None
    outcome = book.match(report(11), now)
    assert outcome is not None
    assert outcome.state is DeliveryState.DELIVERED
    assert outcome.parts == 3


def test_multipart_fails_as_soon_as_one_part_fails() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(10, 11), T0)
    outcome = book.match(report(11, 0x41), T0)
    assert outcome is not None
    assert outcome.state is DeliveryState.FAILED
    assert outcome.status == 0x41
    # The other part's report is absorbed, not attributed elsewhere, and decides nothing.
    assert book.match(report(10), T0) is None
    assert book.orphans == 0


def test_pending_stays_pending() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(3), T0)
    assert book.match(report(3, 0x21), T0) is None  # recipient busy, SMSC still trying
    outcome = book.match(report(3, 0x00), T0 + dt.timedelta(hours=2))
    assert outcome is not None
    assert outcome.state is DeliveryState.DELIVERED


def test_validity_expired_is_expired() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(3), T0)
    outcome = book.match(report(3, 0x46), T0)
    assert outcome is not None
    assert outcome.state is DeliveryState.EXPIRED


def test_recipient_national_form_matches_international() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(4), T0)
    outcome = book.match(report(4, to="017612345678"), T0)
    assert outcome is not None
    assert outcome.message_id == "m1"


def test_other_recipient_with_same_mr_is_not_matched() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(4), T0)
    assert book.match(report(4, to="+4915199999999"), T0) is None
    assert book.orphans == 1


def test_wrapped_mr_matched_by_time() -> None:
    book = ReportBook()
    early, late = T0, T0 + dt.timedelta(minutes=20)
    book.expect("old", TO, parts(9), early)
    book.expect("new", TO, parts(9), late)  # the MR wrapped around
    now = late + dt.timedelta(minutes=1)
    first = book.match(report(9, at=late + dt.timedelta(seconds=2)), now)
    assert first is not None
    assert first.message_id == "new"
    second = book.match(report(9, at=early + dt.timedelta(seconds=1)), now)
    assert second is not None
    assert second.message_id == "old"


def test_wrapped_mr_with_a_wrong_smsc_clock_takes_the_oldest() -> None:
    book = ReportBook()
    book.expect("old", TO, parts(9), T0)
    book.expect("new", TO, parts(9), T0 + dt.timedelta(minutes=20))
    skewed = T0 + dt.timedelta(days=1)
    outcome = book.match(report(9, at=skewed), T0 + dt.timedelta(minutes=30))
    assert outcome is not None
    assert outcome.message_id == "old"


def test_report_before_expect_waits_as_an_orphan() -> None:
    book = ReportBook()
    assert book.match(report(5), T0) is None
    assert book.orphans == 1
    outcome = book.expect("m1", TO, parts(5), T0)
    assert outcome is not None
    assert outcome.state is DeliveryState.DELIVERED
    assert book.orphans == 0


def test_orphans_expire() -> None:
    book = ReportBook()
    book.match(report(5), T0)
    assert book.expire(T0 + ORPHAN_TTL) == []
    assert book.orphans == 0


def test_part_without_reference_is_not_tracked() -> None:
    book = ReportBook()
    assert book.expect("m1", TO, parts(None), T0) is None
    assert len(book) == 0
    book.expect("m2", TO, parts(None, 8), T0)
    outcome = book.match(report(8), T0)
    assert outcome is not None
    assert outcome.message_id == "m2"
    assert outcome.parts == 1


def test_undecided_messages_expire() -> None:
    book = ReportBook(window=dt.timedelta(hours=1))
    book.expect("m1", TO, parts(1), T0)
    book.expect("m2", TO, parts(2), T0 + dt.timedelta(minutes=30))
    book.match(report(2), T0 + dt.timedelta(minutes=31))
    assert book.expire(T0 + dt.timedelta(minutes=61)) == ["m1"]
    assert book.expire(T0 + dt.timedelta(minutes=91)) == []  # m2 was decided: nothing to say
    assert len(book) == 0


def test_clock_as_epoch_seconds() -> None:
    book = ReportBook()
    book.expect("m1", TO, parts(6), T0.timestamp())
    outcome = book.match(report(6), T0.timestamp() + 5)
    assert outcome is not None
    assert outcome.state is DeliveryState.DELIVERED


def test_report_outside_the_window_does_not_match() -> None:
    book = ReportBook(window=dt.timedelta(hours=1))
    book.expect("m1", TO, parts(1), T0)
    assert book.match(report(1), T0 + dt.timedelta(hours=2)) is None


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


@given(
    st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
    st.integers(min_value=0, max_value=255),
)
def test_every_message_decided_exactly_once(
    sizes: list[int], rng: random.Random, first_mr: int
) -> None:
    """Many messages to one number, MRs wrapping, reports in any order: one outcome each."""
    book = ReportBook()
    mr = first_mr
    sent: list[tuple[str, dt.datetime, list[int]]] = []
    for index, size in enumerate(sizes):
        refs = []
        for _ in range(size):
            refs.append(mr)
            mr = (mr + 1) % 256
        at = T0 + dt.timedelta(seconds=index * 30)
        book.expect(f"m{index}", TO, parts(*refs), at)
        sent.append((f"m{index}", at, refs))
    reports = [(at, ref) for _, at, refs in sent for ref in refs]
    rng.shuffle(reports)
    now = T0 + dt.timedelta(hours=1)
    decided = [book.match(report(ref, at=at), now) for at, ref in reports]
    ids = sorted(d.message_id for d in decided if d is not None)
    assert ids == sorted(message_id for message_id, _, _ in sent)
