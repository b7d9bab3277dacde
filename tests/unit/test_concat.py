"""Concatenation references: one counter per recipient, for a bounded set of recipients."""

from __future__ import annotations

import random

from smsgate_agent.concat import ConcatReferences


def test_each_recipient_counts_on_however_its_number_is_spaced() -> None:
    refs = ConcatReferences(random.Random(1))
    first = refs.take("+4917612345678")
    other = refs.take("+4930123456")
    assert refs.take("+49 176 12345678") == (first + 1) % 256  # spaced out, the same number
    assert refs.take("+4930123456") == (other + 1) % 256


def test_memory_stays_flat_however_many_numbers_are_written_to() -> None:
    refs = ConcatReferences(random.Random(1), remembered=100)
    for index in range(10_000):
        refs.take(f"+1555{index:07d}")
    assert len(refs) == 100


def test_a_recipient_written_to_lately_is_remembered_past_the_bound() -> None:
    refs = ConcatReferences(random.Random(1), remembered=3)
    kept = refs.take("+4917600000001")
    for index in range(2, 10):
        refs.take(f"+49176000000{index:02d}")
        assert refs.take("+4917600000001") == (kept + 1) % 256  # written to again: kept
        kept = (kept + 1) % 256
