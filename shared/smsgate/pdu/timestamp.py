"""TP-SCTS style timestamps: 7 semi-octet pairs, the last one the time zone in quarter-hours."""

import datetime

from .errors import PduError

_MAX_QUARTERS = 79  # two BCD digits with the sign in the tens digit


def _swap(value: int) -> int:
    return (value % 10) << 4 | value // 10


def _unswap(octet: int, what: str) -> int:
    tens, units = octet & 0x0F, octet >> 4
    if tens > 9 or units > 9:
        raise PduError(f"timestamp {what} octet {octet:02X} is not BCD")
    return tens * 10 + units


def encode_timestamp(moment: datetime.datetime) -> bytes:
    """Encode an aware datetime in 2000-2099, to the second, in its own UTC offset."""
    offset = moment.utcoffset()
    if offset is None:
        raise PduError(f"timestamp {moment.isoformat()} must be timezone-aware")
    if not 2000 <= moment.year <= 2099:
        raise PduError(f"timestamp year {moment.year} is outside 2000-2099")
    quarters, rest = divmod(abs(offset), datetime.timedelta(minutes=15))
    if rest or quarters > _MAX_QUARTERS:
        raise PduError(f"UTC offset {offset} is not a whole number of quarter-hours below 20h")
    zone = _swap(quarters) | (0x08 if offset < datetime.timedelta(0) else 0)
    fields = (
        moment.year - 2000,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )
    return bytes([*map(_swap, fields), zone])


def decode_timestamp(raw: bytes) -> datetime.datetime:
    """Decode 7 octets; two-digit years are taken as 20yy."""
    year, month, day, hour, minute, second = (
        _unswap(octet, what)
        for octet, what in zip(
            raw[:6], ("year", "month", "day", "hour", "minute", "second"), strict=True
        )
    )
    zone = raw[6]
    # Read arithmetically, not as strict BCD: a real modem (python-gsmmodem#15) sends C2 for
    # +08:00, i.e. 2 tens + 12 units; any value this yields is a valid offset (< 22h).
    quarters = (zone & 0x07) * 10 + (zone >> 4)
    offset = datetime.timedelta(minutes=15 * quarters)
    try:
        tz = datetime.timezone(-offset if zone & 0x08 else offset)
        return datetime.datetime(2000 + year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise PduError(f"timestamp {raw.hex().upper()} is not a valid date: {exc}") from None
