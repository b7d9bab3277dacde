"""Message memories (SIM "SM", modem "ME", status reports "SR"): numbered slots of stored PDUs."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Stat(enum.IntEnum):
    """<stat> of 27.005: numbers in PDU mode, the names below in text mode."""

    REC_UNREAD = 0
    REC_READ = 1
    STO_UNSENT = 2
    STO_SENT = 3


STAT_NAMES = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
ALL = 4  # AT+CMGL=4 / "ALL"
STAT_BY_NAME = {name: i for i, name in enumerate((*STAT_NAMES, "ALL"))}


def tpdu_length(pdu: str) -> int:
    """Octets after the SMSC field: the <length> of AT+CMGS, +CMGR, +CMGL, +CMT and +CDS."""
    return len(pdu) // 2 - 1 - int(pdu[:2], 16)


@dataclass(slots=True)
class Stored:
    """One stored message: the PDU as the modem keeps it (hex with SMSC field) and its <stat>."""

    pdu: str
    stat: Stat

    @property
    def tpdu_length(self) -> int:
        return tpdu_length(self.pdu)


class Memory:
    """`size` slots numbered from `first_index`; a new message takes the lowest free one."""

    def __init__(self, name: str, size: int, first_index: int) -> None:
        self.name = name
        self.size = size
        self.first_index = first_index
        self._slots: dict[int, Stored] = {}

    @property
    def used(self) -> int:
        return len(self._slots)

    @property
    def full(self) -> bool:
        return len(self._slots) >= self.size

    def in_range(self, index: int) -> bool:
        return self.first_index <= index < self.first_index + self.size

    def store(self, pdu: str, stat: Stat) -> int | None:
        """Store a message; its index, or None when the memory is full."""
        for index in range(self.first_index, self.first_index + self.size):
            if index not in self._slots:
                self._slots[index] = Stored(pdu, stat)
                return index
        return None

    def get(self, index: int) -> Stored | None:
        return self._slots.get(index)

    def delete(self, index: int) -> None:
        self._slots.pop(index, None)

    def delete_by_flag(self, flag: int) -> None:
        """AT+CMGD=<i>,<flag> for flag 1-4: read; read+sent; read+sent+unsent; all."""
        doomed = {
            1: {Stat.REC_READ},
            2: {Stat.REC_READ, Stat.STO_SENT},
            3: {Stat.REC_READ, Stat.STO_SENT, Stat.STO_UNSENT},
            4: set(Stat),
        }[flag]
        for index in [i for i, m in self._slots.items() if m.stat in doomed]:
            del self._slots[index]

    def listing(self, stat: int) -> list[tuple[int, Stored]]:
        """Messages with <stat> (or all for 4), in index order."""
        return [
            (index, self._slots[index])
            for index in sorted(self._slots)
            if stat == ALL or self._slots[index].stat == stat
        ]
