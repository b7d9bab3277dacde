"""Exponential back-off, written once: a pause that doubles after each try, up to a cap.

`doubled(first, times, longest)` is the pause after `times` doublings, for code that
counts its attempts (callback retries, the login throttle); `Backoff` is the same as a
running series, for loops that just try again (`await backoff.sleep()`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

# 2.0**n overflows a float near n = 1024: past this many doublings every cap is reached.
_MAX_DOUBLINGS = 64


def doubled(first: float, times: int, longest: float) -> float:
    """`first` doubled `times` times, but never more than `longest`."""
    if times < 0:
        raise ValueError(f"doublings cannot be negative: {times}")
    return min(first * 2.0 ** min(times, _MAX_DOUBLINGS), longest)


@dataclass(slots=True)
class Backoff:
    """Pauses of `first`, `2*first`, `4*first`, ... never longer than `longest`."""

    first: float
    longest: float
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        if self.first < 0 or self.longest < self.first:
            raise ValueError(f"bad back-off {self.first}..{self.longest}")
        self._next = self.first

    @classmethod
    def between(cls, bounds: tuple[float, float]) -> Backoff:
        """A back-off from a (first, longest) pair, as timings keep them."""
        return cls(*bounds)

    @property
    def upcoming(self) -> float:
        """The pause `next()` will give, without moving on."""
        return self._next

    def next(self) -> float:
        """The pause to take now; the one after is twice as long (up to `longest`)."""
        pause = self._next
        self._next = min(pause * 2, self.longest)
        return pause

    def reset(self) -> None:
        """Start again from `first` (the thing tried worked)."""
        self._next = self.first

    async def sleep(self, *, scale: float = 1.0) -> None:
        """Sleep the next pause, times `scale` (jitter is the caller's to choose)."""
        await asyncio.sleep(self.next() * scale)
