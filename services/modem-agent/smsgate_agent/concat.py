"""Concatenation references for outgoing multipart SMS, one counter per recipient.

A handset joins parts by (sender, reference, total), so two long messages to the same
number close together must not share a reference. Only recipients written to lately
need remembering: the oldest is forgotten past a bound, so memory stays flat however
many numbers a port writes to.
"""

from __future__ import annotations

import random

from smsgate_agent.reports import number_digits

REMEMBERED = 1024  # recipients per modem


class ConcatReferences:
    def __init__(self, rng: random.Random, *, remembered: int = REMEMBERED) -> None:
        self._rng = rng
        self._remembered = remembered
        self._next: dict[str, int] = {}  # least recently written first

    def __len__(self) -> int:
        return len(self._next)

    def take(self, to: str) -> int:
        """The reference for the next long message to `to`."""
        key = number_digits(to) or to
        reference = self._next.pop(key, None)
        if reference is None:
            reference = self._rng.randrange(256)
            if len(self._next) >= self._remembered:
                del self._next[next(iter(self._next))]
        self._next[key] = (reference + 1) % 256
        return reference
