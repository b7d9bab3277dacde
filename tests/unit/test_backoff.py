"""The one back-off helper: doubling pauses up to a cap."""

from __future__ import annotations

import pytest
from smsgate.backoff import Backoff, doubled


def test_pauses_double_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 5.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_upcoming_does_not_move_on_and_reset_starts_again() -> None:
    backoff = Backoff.between((2.0, 60.0))
    assert backoff.upcoming == 2.0
    assert backoff.upcoming == 2.0
    backoff.next()
    assert backoff.upcoming == 4.0
    backoff.reset()
    assert backoff.next() == 2.0


def test_doubled_counts_doublings_and_never_overflows() -> None:
    assert [doubled(1.0, n, 30.0) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert doubled(1.0, 10_000, 300.0) == 300.0


@pytest.mark.parametrize(("first", "longest"), [(-1.0, 1.0), (2.0, 1.0)])
def test_bad_bounds_are_refused(first: float, longest: float) -> None:
    with pytest.raises(ValueError, match="bad back-off"):
        Backoff(first, longest)


def test_negative_doublings_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        doubled(1.0, -1, 2.0)
