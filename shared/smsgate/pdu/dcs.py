"""TP-DCS: which alphabet the user data uses and which message class it has (23.038 4)."""

import enum
from dataclasses import dataclass

from .errors import PduError


class Alphabet(enum.StrEnum):
    GSM7 = "gsm7"
    DATA8 = "8bit"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class DataCoding:
    alphabet: Alphabet
    message_class: int | None
    compressed: bool = False


_GENERAL_ALPHABETS = (Alphabet.GSM7, Alphabet.DATA8, Alphabet.UCS2, Alphabet.GSM7)


def parse_dcs(dcs: int) -> DataCoding:
    """Interpret a TP-DCS octet; reserved codings read as GSM 7-bit as 23.038 requires."""
    group = dcs >> 4
    if group <= 0x7:
        # General data coding (and its "automatic deletion" twin 01xx).
        message_class = dcs & 0x03 if dcs & 0x10 else None
        if dcs & 0x20:
            # Compressed user data is counted in octets; nobody implements the compression.
            return DataCoding(Alphabet.DATA8, message_class, compressed=True)
        return DataCoding(_GENERAL_ALPHABETS[(dcs >> 2) & 0x03], message_class)
    if group == 0xE:
        return DataCoding(Alphabet.UCS2, None)  # message waiting indication, UCS-2 text
    if group == 0xF:
        return DataCoding(Alphabet.DATA8 if dcs & 0x04 else Alphabet.GSM7, dcs & 0x03)
    return DataCoding(Alphabet.GSM7, None)  # 0x8-0xB reserved, 0xC-0xD MWI in GSM 7-bit


def build_dcs(alphabet: Alphabet, message_class: int | None = None) -> int:
    """The general-data-coding TP-DCS for an alphabet and optional message class (0-3)."""
    dcs = {Alphabet.GSM7: 0x00, Alphabet.DATA8: 0x04, Alphabet.UCS2: 0x08}[alphabet]
    if message_class is not None:
        if not 0 <= message_class <= 3:
            raise PduError(f"message class must be 0-3, not {message_class}")
        dcs |= 0x10 | message_class
    return dcs
