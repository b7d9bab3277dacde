"""Statements over a list of values, written for a few list lengths only.

A statement with one placeholder (or row of them) per value is a new statement for each
number of values, and each connection keeps the statements it prepared (Python's sqlite3
caches 128 of them; SQLite's memory for one grows with its placeholders, ~800 B per row
of an insert of events). Statements written for whatever number came kept up to 128 of
them per connection: 45 MiB for batches of up to 1,000 events (bench/RESULTS.md, "Issues
19 and 20"). Padded to one of a few lengths, the same few are prepared once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def sizes_up_to(most: int) -> tuple[int, ...]:
    """The lengths a list is padded to: powers of two and one and a half times them, below
    `most`, then `most` (at most half as many values again as there are)."""
    found = {most}
    power = 1
    while power < most:
        found.update(size for size in (power, power + power // 2) if size < most)
        power *= 2
    return tuple(sorted(found))


def padded(values: Sequence[T], sizes: Sequence[int]) -> list[T]:
    """`values`, the last repeated up to the first of `sizes` that holds them all (a
    repeated value must change nothing: a key that conflicts, an IN list)."""
    if not values:
        return []
    size = next(size for size in sizes if size >= len(values))
    return [*values, *[values[-1]] * (size - len(values))]
