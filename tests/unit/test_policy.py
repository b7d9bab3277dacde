import random

from smsgate.config import PolicyOverride, SendPolicy
from smsgate_agent.policy import PortPolicy, effective

DAY = 86400.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def test_port_overrides_farm_defaults() -> None:
    policy = effective(SendPolicy(min_interval=10, daily_cap=100), PolicyOverride(daily_cap=5))
    assert (policy.min_interval, policy.daily_cap) == (10, 5)


def test_pacing_with_jitter_stays_within_bounds() -> None:
    port = PortPolicy(SendPolicy(min_interval=6.0, jitter=2.0), rng=random.Random(1))
    assert port.wait(T0) == 0.0
    port.record_sent(T0, parts=1)
    assert 6.0 <= port.wait(T0) <= 8.0
    assert port.wait(T0 + 8.0) == 0.0


def test_daily_cap_counts_parts_and_resets_next_day() -> None:
    port = PortPolicy(SendPolicy(min_interval=0, jitter=0, daily_cap=3))
    port.record_sent(T0, parts=2)
    assert port.blocked(T0) is None
    port.record_sent(T0, parts=1)
    assert port.blocked(T0) == "daily cap reached"
    assert port.blocked(T0 + DAY) is None


def test_monthly_cap() -> None:
    port = PortPolicy(SendPolicy(min_interval=0, jitter=0, monthly_cap=2))
    port.record_sent(T0, parts=2)
    assert port.blocked(T0 + DAY) == "monthly cap reached"
    assert port.blocked(T0 + 31 * DAY) is None


def test_parks_after_consecutive_failures_then_returns() -> None:
    port = PortPolicy(SendPolicy(min_interval=0, jitter=0, park_after_failures=3, park_seconds=60))
    assert not port.record_failed(T0)
    port.record_sent(T0, parts=1)  # a success resets the streak
    assert not port.record_failed(T0)
    assert not port.record_failed(T0)
    assert port.record_failed(T0)
    assert port.blocked(T0 + 59) == "parked"
    assert port.blocked(T0 + 60) is None
