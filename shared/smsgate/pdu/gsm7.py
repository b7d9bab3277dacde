"""GSM 03.38 default alphabet with its extension table, and 7-bit packing."""

from collections.abc import Iterable, Sequence

from .errors import PduError

ESCAPE = 0x1B
CR = 0x0D

# Index = septet value. 0x1B is the escape to the extension table, never a character.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_ENCODE: dict[str, tuple[int, ...]] = {
    char: (code,) for code, char in enumerate(_BASIC) if code != ESCAPE
}
_ENCODE.update({char: (ESCAPE, code) for code, char in _EXTENSION.items()})
_ENCODABLE = frozenset(_ENCODE)


def gsm7_encodable(text: str) -> bool:
    """True if every character of `text` is in the GSM 7-bit alphabet or its extension."""
    return _ENCODABLE.issuperset(text)


def char_septets(char: str) -> int | None:
    """Septets one character costs (1, or 2 for the extension table); None if unencodable."""
    septets = _ENCODE.get(char)
    return None if septets is None else len(septets)


def encode_septets(text: str) -> list[int]:
    """Map text to septet values, extension characters as ESC + code."""
    septets: list[int] = []
    for char in text:
        codes = _ENCODE.get(char)
        if codes is None:
            raise PduError(
                f"character {char!r} (U+{ord(char):04X}) is not in the GSM 7-bit alphabet"
            )
        septets.extend(codes)
    return septets


def decode_septets(septets: Sequence[int]) -> str:
    """Map septet values to text."""
    chars: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            escaped = False
            # 23.038 6.2.1.1: an unknown extension code shows the basic-table character.
            ext = _EXTENSION.get(septet)
            if ext is not None:
                chars.append(ext)
            else:
                chars.append(" " if septet == ESCAPE else _BASIC[septet])
        elif septet == ESCAPE:
            escaped = True
        else:
            chars.append(_BASIC[septet])
    if escaped:
        # A dangling escape has no character to extend; show it as a space like 23.038 does.
        chars.append(" ")
    return "".join(chars)


def pack(septets: Iterable[int], fill_bits: int = 0, *, cr_pad: bool = False) -> bytes:
    """Pack septets LSB-first after `fill_bits` zero bits (the fill that follows a UDH)."""
    value = 0
    bits = fill_bits
    septets = list(septets)
    if not septets:
        return b""  # fill bits alone take no octet
    for septet in septets:
        value |= (septet & 0x7F) << bits
        bits += 7
    size = (bits + 7) // 8
    # 23.038 6.1.2.3.1 (USSD/CBS): 7 spare bits would read as '@', so they become CR.
    if cr_pad and size * 8 - bits == 7:
        value |= CR << bits
    return value.to_bytes(size, "little")


def unpack(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """Unpack up to `count` septets that start after `fill_bits` bits of `data`."""
    available = max(0, (len(data) * 8 - fill_bits) // 7)
    value = int.from_bytes(data, "little") >> fill_bits
    septets: list[int] = []
    for _ in range(min(count, available)):
        septets.append(value & 0x7F)
        value >>= 7
    return septets
