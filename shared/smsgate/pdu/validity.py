"""TP-VP: the relative validity period code (23.040 9.2.3.12.1) and the enhanced format."""

import bisect
import datetime

from .errors import PduError

_MINUTE = datetime.timedelta(minutes=1)


def decode_relative(code: int) -> datetime.timedelta:
    """The period a relative TP-VP code stands for."""
    if code <= 143:
        return (code + 1) * 5 * _MINUTE
    if code <= 167:
        return datetime.timedelta(hours=12) + (code - 143) * 30 * _MINUTE
    if code <= 196:
        return datetime.timedelta(days=code - 166)
    return datetime.timedelta(weeks=code - 192)


_PERIODS = [decode_relative(code) for code in range(256)]


def encode_relative(period: datetime.timedelta) -> int:
    """The smallest code that keeps the message at least `period` (capped at 63 weeks)."""
    if period < datetime.timedelta(0):
        raise PduError(f"validity period {period} is negative")
    return min(bisect.bisect_left(_PERIODS, period), 255)


def decode_enhanced(raw: bytes) -> datetime.timedelta | None:
    """The period of a 7-octet enhanced TP-VP, or None if it carries none we understand."""
    form = raw[0] & 0x07
    if form == 1:
        return decode_relative(raw[1])
    if form == 2:
        return datetime.timedelta(seconds=raw[1])
    if form == 3:
        hh, mm, ss = ((octet & 0x0F) * 10 + (octet >> 4) for octet in raw[1:4])
        return datetime.timedelta(hours=hh, minutes=mm, seconds=ss)
    return None
