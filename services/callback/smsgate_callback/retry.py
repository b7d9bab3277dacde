"""The back-off policy: when to try a failed callback again, and when to give up.

Pure functions of the attempt number, the event's age and the receiver's Retry-After,
so the whole schedule is tested without clocks or sockets.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass

from smsgate.backoff import doubled


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential back-off from `initial` doubling up to `maximum`, until `max_age`."""

    initial: float = 1.0
    maximum: float = 300.0
    max_age: float = 86400.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based), before Retry-After."""
        if attempt < 1:
            raise ValueError("attempts count from 1")
        return doubled(self.initial, attempt - 1, self.maximum)

    def next_retry(
        self, attempt: int, age: float, retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when the event is too old to retry.

        Retry-After is honoured when it asks for a longer pause than the back-off. A pause
        that would pass `max_age` is cut short, so the last attempt happens at the deadline.
        """
        remaining = self.max_age - age
        if remaining <= 0:
            return None
        pause = self.delay(attempt)
        if retry_after is not None:
            pause = max(pause, retry_after)
        return min(pause, remaining)


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)
