"""How a text splits into SMS parts: alphabet choice, capacities and part boundaries."""

from dataclasses import dataclass

from . import gsm7
from .dcs import Alphabet
from .errors import PduError

MAX_PARTS = 255

_SINGLE = {Alphabet.GSM7: 160, Alphabet.UCS2: 70, Alphabet.DATA8: 140}
# A concatenation UDH takes 6 octets (8-bit reference) or 7 (16-bit); GSM 7-bit loses 7 or 8
# septets to it because the text must start on a septet boundary.
_MULTI = {Alphabet.GSM7: 153, Alphabet.UCS2: 67, Alphabet.DATA8: 134}
_MULTI_WIDE = {Alphabet.GSM7: 152, Alphabet.UCS2: 66, Alphabet.DATA8: 133}


@dataclass(frozen=True, slots=True)
class Segmentation:
    """How many parts a text needs; `units` are septets, UTF-16 units or octets in total."""

    alphabet: Alphabet
    parts: int
    units: int
    per_part: int


def choose_alphabet(text: str) -> Alphabet:
    """GSM 7-bit when every character has a septet code, otherwise UCS-2."""
    return Alphabet.GSM7 if gsm7.gsm7_encodable(text) else Alphabet.UCS2


def _costs(text: str, alphabet: Alphabet) -> list[int]:
    costs: list[int] = []
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            raise PduError(f"text contains a lone surrogate U+{code:04X}")
        if alphabet is Alphabet.GSM7:
            cost = gsm7.char_septets(char)
            if cost is None:
                raise PduError(
                    f"character {char!r} (U+{code:04X}) is not in the GSM 7-bit alphabet"
                )
        elif alphabet is Alphabet.UCS2:
            cost = 2 if code > 0xFFFF else 1  # a surrogate pair
        elif code > 0xFF:
            raise PduError(f"character {char!r} (U+{code:04X}) cannot be sent as 8-bit data")
        else:
            cost = 1
        costs.append(cost)
    return costs


def _plan(
    text: str, alphabet: Alphabet | None, wide_reference: bool
) -> tuple[Alphabet, int, int, list[int]]:
    """(alphabet, total units, capacity per part, end index of each part)."""
    chosen = alphabet or choose_alphabet(text)
    costs = _costs(text, chosen)
    total = sum(costs)
    if total <= _SINGLE[chosen]:
        return chosen, total, _SINGLE[chosen], [len(text)]
    capacity = (_MULTI_WIDE if wide_reference else _MULTI)[chosen]
    ends: list[int] = []
    used = 0
    for index, cost in enumerate(costs):
        # A character never straddles parts: escape sequences and surrogate pairs stay whole.
        if used + cost > capacity:
            ends.append(index)
            used = 0
        used += cost
    ends.append(len(text))
    return chosen, total, capacity, ends


def count_segments(
    text: str, *, alphabet: Alphabet | None = None, wide_reference: bool = False
) -> Segmentation:
    """Count the parts encode_submit would make of `text`, without encoding it."""
    chosen, total, capacity, ends = _plan(text, alphabet, wide_reference)
    return Segmentation(chosen, len(ends), total, capacity)


def split_text(
    text: str, *, alphabet: Alphabet | None = None, wide_reference: bool = False
) -> tuple[Alphabet, list[str]]:
    """The alphabet and the per-part texts encode_submit uses."""
    chosen, _, _, ends = _plan(text, alphabet, wide_reference)
    if len(ends) > MAX_PARTS:
        raise PduError(f"text needs {len(ends)} parts; at most {MAX_PARTS} can be concatenated")
    starts = [0, *ends[:-1]]
    return chosen, [text[start:end] for start, end in zip(starts, ends, strict=True)]


def split_for_deliver(
    text: str, *, alphabet: Alphabet | None = None, wide_reference: bool = False
) -> list[str]:
    """Split text into per-part texts exactly as encode_submit does (for the simulator)."""
    return split_text(text, alphabet=alphabet, wide_reference=wide_reference)[1]
