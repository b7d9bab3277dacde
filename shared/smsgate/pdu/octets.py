"""Hex conversion and bounds-checked reading of PDU octets."""

import re

from .errors import PduError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_HEX = re.compile("[0-9a-fA-F]*")


def from_hex(pdu_hex: str) -> bytes:
    """Turn a hex PDU (either case, surrounding whitespace allowed) into bytes."""
    if not isinstance(pdu_hex, str):
        raise PduError(f"PDU must be a hex string, not {type(pdu_hex).__name__}")
    text = pdu_hex.strip()
    if not text:
        raise PduError("PDU is empty")
    if not _HEX.fullmatch(text):  # one C scan for every PDU; the error names the culprit
        bad = next(ch for ch in text if ch not in _HEX_DIGITS)
        raise PduError(f"PDU contains a non-hex character {bad!r}")
    if len(text) % 2:
        raise PduError(f"PDU hex has an odd number of digits ({len(text)})")
    return bytes.fromhex(text)


def to_hex(data: bytes) -> str:
    """Uppercase hex, as modems expect it."""
    return data.hex().upper()


class Reader:
    """A cursor over PDU octets that raises PduError instead of running off the end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def peek(self, what: str) -> int:
        """The next octet, without consuming it."""
        if self._pos >= len(self._data):
            raise PduError(f"PDU truncated: no octet left for {what} at offset {self._pos}")
        return self._data[self._pos]

    def octet(self, what: str) -> int:
        """Read one octet holding `what`."""
        if self._pos >= len(self._data):
            raise PduError(f"PDU truncated: no octet left for {what} at offset {self._pos}")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def take(self, count: int, what: str) -> bytes:
        """Read `count` octets holding `what`."""
        if count > self.remaining:
            raise PduError(
                f"PDU truncated: {what} needs {count} octet(s) at offset {self._pos}, "
                f"only {self.remaining} left"
            )
        value = self._data[self._pos : self._pos + count]
        self._pos += count
        return value

    def rest(self) -> bytes:
        """Read everything that is left."""
        value = self._data[self._pos :]
        self._pos = len(self._data)
        return value
