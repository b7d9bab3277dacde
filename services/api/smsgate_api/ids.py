"""Fresh ids, cheaply: message ids that sort by time, and random event ids."""

from __future__ import annotations

import os
import time

_IDS_PER_READ = 256
_fresh: list[str] = []
# A forked child must not hand out the ids its parent has already drawn.
os.register_at_fork(after_in_child=_fresh.clear)


def fresh_id() -> str:
    """128 random bits as 32 hex digits, like `contracts.new_id`, at a fraction of its cost.

    The bits come from os.urandom like uuid4's, but read for 256 ids at a time: one
    system call per id was a measurable share of a `/sendsms` request.
    """
    if not _fresh:
        block = os.urandom(16 * _IDS_PER_READ).hex()
        _fresh.extend(block[i : i + 32] for i in range(0, len(block), 32))
    return _fresh.pop()


def new_message_id() -> str:
    """A fresh message id: 32 hex digits that sort by the time they were made."""
    return time_ordered(time.time_ns() // 1_000_000, fresh_id())


def time_ordered(millis: int, random_hex: str) -> str:
    """The time in Unix milliseconds (12 hex digits, as in a UUIDv7), then 20 hex digits of
    `random_hex`: 80 random bits. Ids made together sit together in the history's indexes;
    random ones scattered every batch of writes over all their pages (measured at 200,000
    messages: 6x the bytes written per event on SQLite, bench/RESULTS.md section 7)."""
    return f"{millis & 0xFFFFFFFFFFFF:012x}{random_hex[:20]}"
