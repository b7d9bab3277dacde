"""Faults a modem can be told to have, switched on and off at run time."""

from __future__ import annotations

import random
from typing import Annotated

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
CmsCode = Annotated[int, msgspec.Meta(ge=0, le=511)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Rssi = Annotated[int, msgspec.Meta(ge=0, le=99)]

# Unsolicited lines real modems drop into the middle of other output.
NOISE_URCS = (
    "^RSSI: 20",
    "+CREG: 1",
    "+CEREG: 1",
    '+ZPASR: "LTE"',
    '+ZDONR: "SIMNET",1,1,"CS_PS","ROAM_OFF"',
)
# Line noise is binary junk without line ends, so it corrupts the start of the next line.
_JUNK = bytes(b for b in range(256) if b not in (0x0D, 0x0A))


class Faults(msgspec.Struct, kw_only=True):
    """The faults one modem has now; all off by default."""

    send_error: CmsCode = 500  # the +CMS ERROR a failed send answers with
    send_error_count: Count = 0  # the next N sends fail
    send_error_rate: Rate = 0.0  # and each send fails with this chance
    hung: bool = False  # reads and answers nothing until reset or cleared
    sim_not_ready: bool = False  # +CME ERROR: 14 / +CMS ERROR: 314
    deregistered: bool = False  # +CREG: 0,2, sends fail with +CMS ERROR: 331
    storage_full: bool = False  # +CMS ERROR: 322, inbound waits at the network
    garbage_rate: Rate = 0.0  # chance per response of junk bytes before it
    urc_rate: Rate = 0.0  # chance per response of an unrelated URC inside it
    signal: Rssi | None = None  # AT+CSQ rssi override (99: no signal)

    def send_fails(self, rng: random.Random) -> int | None:
        """The +CMS ERROR code this send must fail with, or None; consumes one counted failure."""
        if self.send_error_count > 0:
            self.send_error_count -= 1
            return self.send_error
        if self.send_error_rate and rng.random() < self.send_error_rate:
            return self.send_error
        return None


class FaultUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to a modem's faults: fields left out (None) keep their value."""

    send_error: CmsCode | None = None
    send_error_count: Count | None = None
    send_error_rate: Rate | None = None
    hung: bool | None = None
    sim_not_ready: bool | None = None
    deregistered: bool | None = None
    storage_full: bool | None = None
    garbage_rate: Rate | None = None
    urc_rate: Rate | None = None
    signal: Rssi | None = None

    def changes(self) -> dict[str, object]:
        """The fields this update sets."""
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not None
        }


def garbage(rng: random.Random, size: int | None = None) -> bytes:
    """A burst of line noise, 1-16 bytes unless `size` says."""
    count = size if size is not None else rng.randint(1, 16)
    return bytes(rng.choice(_JUNK) for _ in range(count))


def noise_urc(rng: random.Random) -> str:
    """One unrelated URC line, as modems interleave them."""
    return rng.choice(NOISE_URCS)
