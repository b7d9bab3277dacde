"""The back-off policy, with no clock: delays, Retry-After, the max-age deadline."""

from __future__ import annotations

import datetime as dt

import pytest
from smsgate_callback.retry import BackoffPolicy, parse_retry_after

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_defaults_double_from_one_second_to_five_minutes() -> None:
    policy = BackoffPolicy()
    delays = [policy.delay(n) for n in range(1, 12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert policy.max_age == 86400


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert BackoffPolicy(initial=0.05, maximum=0.4).delay(10_000) == 0.4


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        BackoffPolicy().delay(0)


def test_next_retry_follows_the_backoff_while_young() -> None:
    policy = BackoffPolicy(initial=0.05, maximum=0.4, max_age=60)
    assert [policy.next_retry(n, age=1.0) for n in (1, 2, 3, 4, 5)] == [0.05, 0.1, 0.2, 0.4, 0.4]


def test_retry_after_wins_only_when_longer() -> None:
    policy = BackoffPolicy(initial=1, maximum=300, max_age=86400)
    assert policy.next_retry(1, age=0, retry_after=30) == 30
    assert policy.next_retry(5, age=0, retry_after=3) == 16
    # Honoured beyond backoff_max: the receiver asked for it.
    assert policy.next_retry(1, age=0, retry_after=3600) == 3600


def test_the_last_pause_ends_at_the_deadline_and_then_it_gives_up() -> None:
    policy = BackoffPolicy(initial=1, maximum=300, max_age=100)
    assert policy.next_retry(9, age=90) == 10  # 256 s cut to the 10 s left
    assert policy.next_retry(1, age=99, retry_after=50) == 1
    assert policy.next_retry(1, age=100) is None
    assert policy.next_retry(1, age=250) is None


def test_zero_max_age_never_retries() -> None:
    assert BackoffPolicy(max_age=0).next_retry(1, age=0) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),  # in the past: at once
        ("soon", None),
        ("²", None),  # a Unicode digit that float() refuses
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected
