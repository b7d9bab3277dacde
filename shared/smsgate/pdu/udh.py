"""The user data header: concatenation and application port information elements."""

from dataclasses import dataclass

from .errors import PduError

IEI_CONCAT_8 = 0x00
IEI_PORTS_8 = 0x04
IEI_PORTS_16 = 0x05
IEI_CONCAT_16 = 0x08


@dataclass(frozen=True, slots=True)
class Concat:
    """Concatenation info: the part `sequence` of `total`; `wide` means a 16-bit reference."""

    reference: int
    total: int
    sequence: int
    wide: bool = False


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    concat: Concat | None
    port: tuple[int, int] | None  # (destination, source)
    elements: tuple[tuple[int, bytes], ...]  # every IE as (IEI, value), known or not


def encode_udh(concat: Concat | None = None, port: tuple[int, int] | None = None) -> bytes:
    """A complete UDH including its length octet; empty when there is nothing to say."""
    body = b""
    if concat is not None:
        limit = 0xFFFF if concat.wide else 0xFF
        if not 0 <= concat.reference <= limit:
            raise PduError(f"concatenation reference {concat.reference} is outside 0-{limit}")
        if not 1 <= concat.sequence <= concat.total <= 255:
            raise PduError(
                f"concatenation part {concat.sequence} of {concat.total} is impossible "
                "(need 1 <= part <= total <= 255)"
            )
        if concat.wide:
            ref = concat.reference.to_bytes(2, "big")
            body += bytes([IEI_CONCAT_16, 4, *ref, concat.total, concat.sequence])
        else:
            body += bytes([IEI_CONCAT_8, 3, concat.reference, concat.total, concat.sequence])
    if port is not None:
        destination, source = port
        if not (0 <= destination <= 0xFFFF and 0 <= source <= 0xFFFF):
            raise PduError(f"application ports {port} are outside 0-65535")
        if destination <= 0xFF and source <= 0xFF:
            body += bytes([IEI_PORTS_8, 2, destination, source])
        else:
            body += bytes([IEI_PORTS_16, 4, *destination.to_bytes(2, "big")])
            body += source.to_bytes(2, "big")
    return bytes([len(body)]) + body if body else b""


def decode_udh(body: bytes) -> UserDataHeader:
    """Parse the information elements of a UDH (without its length octet)."""
    concat: Concat | None = None
    port: tuple[int, int] | None = None
    elements: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise PduError(f"user data header truncated: element at offset {pos} has no length")
        iei, length = body[pos], body[pos + 1]
        value = body[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise PduError(
                f"user data header element {iei:02X} claims {length} octets, "
                f"only {len(value)} left in the header"
            )
        pos += 2 + length
        elements.append((iei, value))
        # Malformed known elements are ignored like unknown ones (23.040 9.2.3.24).
        if iei == IEI_CONCAT_8 and length == 3:
            concat = _concat(value[0], value[1], value[2], wide=False) or concat
        elif iei == IEI_CONCAT_16 and length == 4:
            reference = int.from_bytes(value[:2], "big")
            concat = _concat(reference, value[2], value[3], wide=True) or concat
        elif iei == IEI_PORTS_8 and length == 2:
            port = (value[0], value[1])
        elif iei == IEI_PORTS_16 and length == 4:
            port = (int.from_bytes(value[:2], "big"), int.from_bytes(value[2:], "big"))
    return UserDataHeader(concat, port, tuple(elements))


def _concat(reference: int, total: int, sequence: int, *, wide: bool) -> Concat | None:
    # 23.040 9.2.3.24.1: a part number of 0 or above the total means "ignore this element".
    if not 1 <= sequence <= total:
        return None
    return Concat(reference, total, sequence, wide)
