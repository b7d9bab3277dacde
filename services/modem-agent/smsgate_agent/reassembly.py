"""Join the parts of concatenated inbound SMS, across time, with a timeout.

Pure: parts go in, whole messages come out. The agent keeps the pending parts
durable (KV) so a crash between parts loses nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import msgspec


class InboundPart(msgspec.Struct, frozen=True, kw_only=True):
    """One received part, as stored while its siblings are awaited."""

    sender: str
    text: str
    smsc_time: dt.datetime
    smsc: str | None = None
    reference: int = 0
    total: int = 1
    sequence: int = 1
    received: float  # wall clock, seconds

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.sender, self.reference, self.total)


@dataclass(frozen=True)
class Joined:
    """A message ready to publish: the parts it was made of, in order."""

    parts: list[InboundPart]
    complete: bool

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts)

    @property
    def first(self) -> InboundPart:
        return self.parts[0]


@dataclass
class Reassembler:
    """Parts are grouped by (sender, reference, total); duplicates are ignored."""

    timeout: float = 600.0
    pending: dict[tuple[str, int, int], dict[int, InboundPart]] = field(default_factory=dict)

    def add(self, part: InboundPart) -> Joined | None:
        """Add a part; returns the joined message when its last part arrives."""
        if part.total <= 1:
            return Joined([part], complete=True)
        group = self.pending.setdefault(part.key, {})
        group.setdefault(part.sequence, part)
        if len(group) == part.total:
            del self.pending[part.key]
            return Joined([group[i] for i in sorted(group)], complete=True)
        return None

    def expire(self, now: float) -> list[Joined]:
        """Incomplete messages whose first part is older than the timeout, as they are."""
        out = []
        for key, group in list(self.pending.items()):
            if now - min(p.received for p in group.values()) >= self.timeout:
                del self.pending[key]
                out.append(Joined([group[i] for i in sorted(group)], complete=False))
        return out
