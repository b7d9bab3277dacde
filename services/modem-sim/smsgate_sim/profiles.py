"""Quirk profiles: the ways real modem families differ from the 27.005/27.007 text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IccidStyle = Literal["plain", "quoted", "huawei"]


@dataclass(frozen=True, slots=True)
class Profile:
    """What one modem family does differently; `standard` follows the specifications."""

    name: str
    manufacturer: str
    model: str
    prompt: bytes = b"\r\n> "
    unsupported: str = "ERROR"  # final result for a command the firmware does not know
    first_index: int = 1  # storage indexes start here (Huawei and Quectel count from 0)
    cpin_ok: bool = True  # Wavecom answers AT+CPIN? without a final OK
    iccid: IccidStyle = "plain"
    rssi_every: float | None = None  # seconds between unsolicited ^RSSI reports (until ^CURC=0)


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", "SMSGATE", "SIM-LTE"),
    # Several SIMCom/Telit firmwares end the prompt with a line break instead of a space.
    "noprompt-space": Profile("noprompt-space", "SMSGATE", "SIM-LTE-NP", prompt=b"\r\n>\r\n"),
    # Huawei sticks: ^ICCID instead of +CCID, 0-based storage and their own "not supported".
    "huawei": Profile(
        "huawei",
        "huawei",
        "E3372",
        unsupported="COMMAND NOT SUPPORT",
        first_index=0,
        iccid="huawei",
        rssi_every=15.0,
    ),
    # Wavecom/Sierra: +CPIN: READY comes without OK, +CCID is quoted.
    "wavecom": Profile(
        "wavecom", "WAVECOM MODEM", "MULTIBAND 900E 1800", cpin_ok=False, iccid="quoted"
    ),
}


def profile(name: str) -> Profile:
    """The profile called `name`; ValueError names the ones that exist."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown modem profile {name!r}; expected one of {sorted(PROFILES)}"
        ) from None
