"""TP-UDL and TP-UD: the header, fill bits and text of the user data, in each alphabet."""

from dataclasses import dataclass

from . import gsm7
from .dcs import Alphabet
from .errors import PduError
from .octets import Reader
from .udh import UserDataHeader, decode_udh

MAX_OCTETS = 140
MAX_SEPTETS = 160


@dataclass(frozen=True, slots=True)
class UserData:
    header: UserDataHeader | None
    text: str
    data: bytes  # the user data after the header, as sent


def _header_septets(header_octets: int) -> tuple[int, int]:
    """(septets the header occupies, fill bits) so that the text starts on a septet boundary."""
    bits = header_octets * 8
    fill = -bits % 7
    return (bits + fill) // 7, fill


def encode_text(text: str, alphabet: Alphabet) -> bytes:
    """Encode text in an 8-bit or UCS-2 alphabet (GSM 7-bit is packed separately)."""
    try:
        if alphabet is Alphabet.UCS2:
            return text.encode("utf-16-be")
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        raise PduError(
            f"character {char!r} (U+{ord(char):04X}) cannot be sent as {alphabet.value}"
        ) from None


def encode_user_data(text: str, alphabet: Alphabet, header: bytes) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for text after a complete UDH (b"" for none)."""
    if alphabet is Alphabet.GSM7:
        septets = gsm7.encode_septets(text)
        header_septets, fill = _header_septets(len(header))
        if header_septets + len(septets) > MAX_SEPTETS:
            raise PduError(
                f"text needs {len(septets)} septets but only {MAX_SEPTETS - header_septets} "
                "fit in one PDU"
            )
        return header_septets + len(septets), header + gsm7.pack(septets, fill)
    payload = encode_text(text, alphabet)
    if len(header) + len(payload) > MAX_OCTETS:
        raise PduError(
            f"text needs {len(payload)} octets but only {MAX_OCTETS - len(header)} fit in one PDU"
        )
    return len(header) + len(payload), header + payload


def read_user_data(reader: Reader, alphabet: Alphabet, *, has_header: bool) -> UserData:
    """Read TP-UDL and TP-UD (octets after the user data are ignored)."""
    # A TP-UDL beyond the 23.040 maximum (160 septets / 140 octets) is a known encoder bug and
    # is read as "all that is there"; a legal TP-UDL the data falls short of means truncation.
    length = reader.octet("TP-UDL")
    raw = reader.rest()
    header: UserDataHeader | None = None
    header_octets = 0
    if has_header and length:
        if not raw:
            raise PduError("PDU truncated: TP-UDHI is set but there is no user data header")
        header_octets = 1 + raw[0]
        if header_octets > len(raw):
            raise PduError(
                f"PDU truncated: user data header of {raw[0]} octets, only {len(raw) - 1} left"
            )
        header = decode_udh(raw[1:header_octets])
    body = raw[header_octets:]
    if alphabet is Alphabet.GSM7:
        header_septets, fill = _header_septets(header_octets)
        if header_octets and length < header_septets:
            raise PduError(
                f"TP-UDL of {length} septets is shorter than the {header_octets}-octet header"
            )
        count = length - header_septets
        needed = (fill + 7 * count + 7) // 8 if count else 0
        if length <= MAX_SEPTETS and needed > len(body):
            raise PduError(
                f"PDU truncated: {count} septets of text need {needed} octets, "
                f"only {len(body)} left"
            )
        septets = gsm7.unpack(body, count, fill)
        used = (fill + 7 * len(septets) + 7) // 8 if septets else 0
        return UserData(header, gsm7.decode_septets(septets), body[:used])
    if length < header_octets:
        raise PduError(
            f"TP-UDL of {length} octets is shorter than the {header_octets}-octet header"
        )
    count = length - header_octets
    if length <= MAX_OCTETS and count > len(body):
        raise PduError(f"PDU truncated: {count} octets of text announced, only {len(body)} left")
    data = body[:count]
    if alphabet is Alphabet.UCS2:
        # A lone surrogate (an emoji split by a careless sender) becomes U+FFFD; `data` keeps it.
        text = data[: len(data) // 2 * 2].decode("utf-16-be", errors="replace")
    else:
        text = data.decode("latin-1")
    return UserData(header, text, data)
