"""Address fields: TP-OA/DA/RA (length in digits) and the SMSC field (length in octets)."""

from . import gsm7
from .errors import PduError
from .octets import Reader

TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_ALPHANUMERIC = 0xD0

_TON_INTERNATIONAL = 1
_TON_ALPHANUMERIC = 5
_MAX_DIGITS = 20
_MAX_ALPHANUMERIC_SEPTETS = 11
_MAX_SMSC_OCTETS = 11  # TOA + 10 octets of digits

# 23.040 9.1.2.3: semi-octet values; 0xF is the filler of an odd-length number.
_BCD_DIGITS = "0123456789*#abc"
_DIALABLE = frozenset("0123456789*#")


def _bcd(digits: str) -> bytes:
    nibbles = [_BCD_DIGITS.index(d) for d in digits]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    return bytes(lo | hi << 4 for lo, hi in zip(nibbles[::2], nibbles[1::2], strict=True))


def _digits(raw: bytes, count: int) -> str:
    out: list[str] = []
    for octet in raw:
        for nibble in (octet & 0x0F, octet >> 4):
            # Fillers are skipped wherever they sit: some modems count them in the length.
            if nibble != 0xF and len(out) < count:
                out.append(_BCD_DIGITS[nibble])
    return "".join(out)


def _split_number(number: str, what: str) -> tuple[int, str]:
    """(TOA, digits) for a dialable number, international when it starts with '+'."""
    if number.startswith("+"):
        toa, digits = TOA_INTERNATIONAL, number[1:]
    else:
        toa, digits = TOA_UNKNOWN, number
    if not digits or not _DIALABLE.issuperset(digits):
        raise PduError(f"{what} {number!r} is not a phone number")
    if len(digits) > _MAX_DIGITS:
        raise PduError(f"{what} {number!r} has more than {_MAX_DIGITS} digits")
    return toa, digits


def encode_address(number: str, *, toa: int | None = None) -> bytes:
    """TP address field: '+…' international, digits national/unknown, otherwise alphanumeric."""
    if not number:
        raise PduError("address is empty")
    if number.startswith("+") or _DIALABLE.issuperset(number):
        default_toa, digits = _split_number(number, "address")
        return bytes([len(digits), default_toa if toa is None else toa]) + _bcd(digits)
    if not gsm7.gsm7_encodable(number):
        raise PduError(f"alphanumeric address {number!r} is not GSM 7-bit text")
    septets = gsm7.encode_septets(number)
    if len(septets) > _MAX_ALPHANUMERIC_SEPTETS:
        raise PduError(
            f"alphanumeric address {number!r} is longer than {_MAX_ALPHANUMERIC_SEPTETS} septets"
        )
    semi_octets = (len(septets) * 7 + 3) // 4
    packed = gsm7.pack(septets)
    return bytes([semi_octets, TOA_ALPHANUMERIC if toa is None else toa]) + packed


def read_address(reader: Reader, what: str) -> str:
    """Read a TP address field; international numbers get a leading '+'."""
    length = reader.octet(f"{what} length")
    toa = reader.octet(f"{what} type")
    raw = reader.take((length + 1) // 2, what)
    ton = (toa >> 4) & 0x07
    if ton == _TON_ALPHANUMERIC:
        return gsm7.decode_septets(gsm7.unpack(raw, length * 4 // 7))
    digits = _digits(raw, length)
    return "+" + digits if ton == _TON_INTERNATIONAL and digits else digits


def encode_smsc(smsc: str | None) -> bytes:
    """The SMSC field; a single 00 octet means 'use the SMSC stored in the modem'."""
    if smsc is None:
        return b"\x00"
    toa, digits = _split_number(smsc, "SMSC")
    body = bytes([toa]) + _bcd(digits)
    return bytes([len(body)]) + body


def read_smsc(reader: Reader) -> str | None:
    """Read the SMSC field; None when it is empty."""
    length = reader.octet("SMSC length")
    if length == 0:
        return None
    if length > _MAX_SMSC_OCTETS:
        raise PduError(
            f"SMSC field length {length} is impossible (max {_MAX_SMSC_OCTETS}); "
            "if this PDU has no SMSC field, decode it with smsc_included=False"
        )
    toa = reader.octet("SMSC type")
    digits = _digits(reader.take(length - 1, "SMSC address"), 2 * (length - 1))
    return "+" + digits if (toa >> 4) & 0x07 == _TON_INTERNATIONAL and digits else digits
