"""Per-SIM send policy: pacing, daily and monthly caps, parking after failures.

Pure logic over a clock value, so it is tested without time passing.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from smsgate.config import PolicyOverride, SendPolicy


def effective(defaults: SendPolicy, override: PolicyOverride) -> SendPolicy:
    """The farm defaults with the port's own overrides on top."""
    values = {
        name: getattr(override, name)
        for name in SendPolicy.__struct_fields__
        if getattr(override, name, None) is not None
    }
    return SendPolicy(
        **{**{n: getattr(defaults, n) for n in SendPolicy.__struct_fields__}, **values}
    )


@dataclass
class PortPolicy:
    """The send budget of one SIM. `now` is a wall-clock timestamp in seconds."""

    policy: SendPolicy
    rng: random.Random = field(default_factory=random.Random)
    next_send_at: float = 0.0
    consecutive_failures: int = 0
    parked_until: float = 0.0
    day: dt.date | None = None
    sent_today: int = 0
    month: tuple[int, int] | None = None
    sent_this_month: int = 0

    def _roll(self, now: float) -> None:
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        if self.day != today:
            self.day, self.sent_today = today, 0
        if self.month != (today.year, today.month):
            self.month, self.sent_this_month = (today.year, today.month), 0

    def blocked(self, now: float) -> str | None:
        """Why this SIM may not start a send now (parked, capped), or None."""
        self._roll(now)
        if now < self.parked_until:
            return "parked"
        cap = self.policy.daily_cap
        if cap is not None and self.sent_today >= cap:
            return "daily cap reached"
        cap = self.policy.monthly_cap
        if cap is not None and self.sent_this_month >= cap:
            return "monthly cap reached"
        return None

    def wait(self, now: float) -> float:
        """Seconds until the pacing interval allows the next send."""
        return max(0.0, self.next_send_at - now)

    def record_sent(self, now: float, parts: int) -> None:
        """Count a message (every part costs a send) and schedule the next slot."""
        self._roll(now)
        self.sent_today += parts
        self.sent_this_month += parts
        self.consecutive_failures = 0
        self._schedule(now)

    def record_failed(self, now: float) -> bool:
        """Count a failure; returns True when it parks the SIM."""
        self.consecutive_failures += 1
        self._schedule(now)
        if self.consecutive_failures >= self.policy.park_after_failures:
            self.parked_until = now + self.policy.park_seconds
            self.consecutive_failures = 0
            return True
        return False

    def _schedule(self, now: float) -> None:
        jitter = self.rng.uniform(0.0, self.policy.jitter) if self.policy.jitter else 0.0
        self.next_send_at = now + self.policy.min_interval + jitter
