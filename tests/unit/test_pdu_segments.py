"""Segment counting and splitting at the part boundaries, agreeing with encode_submit."""

import pytest
from smsgate.pdu import (
    Alphabet,
    PduError,
    Segmentation,
    count_segments,
    encode_submit,
    split_for_deliver,
)

GSM7, UCS2, DATA8 = Alphabet.GSM7, Alphabet.UCS2, Alphabet.DATA8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Segmentation(GSM7, 1, 0, 160)),
        ("a" * 160, Segmentation(GSM7, 1, 160, 160)),
        ("a" * 161, Segmentation(GSM7, 2, 161, 153)),
        ("a" * 306, Segmentation(GSM7, 2, 306, 153)),
        ("a" * 307, Segmentation(GSM7, 3, 307, 153)),
        ("€" * 80, Segmentation(GSM7, 1, 160, 160)),  # each € is ESC + 0x65
        ("€" * 81, Segmentation(GSM7, 2, 162, 153)),
        ("\f^{}\\[~]|", Segmentation(GSM7, 1, 18, 160)),
        ("ж" * 70, Segmentation(UCS2, 1, 70, 70)),
        ("ж" * 71, Segmentation(UCS2, 2, 71, 67)),
        ("😀" * 35, Segmentation(UCS2, 1, 70, 70)),  # a surrogate pair is two units
        ("a" + "😀" * 35, Segmentation(UCS2, 2, 71, 67)),
        ("a" * 159 + "ç", Segmentation(UCS2, 3, 160, 67)),  # one non-GSM char switches all
    ],
)
def test_count_segments(text: str, expected: Segmentation) -> None:
    assert count_segments(text) == expected
    assert len(encode_submit("+15551234567", text)) == expected.parts


def test_escape_sequence_is_never_split() -> None:
    pieces = split_for_deliver("€" * 81)
    assert [len(piece) for piece in pieces] == [76, 5]  # 77 would need 154 septets
    pieces = split_for_deliver("a" * 152 + "€" + "b" * 10)
    assert pieces == ["a" * 152, "€" + "b" * 10]


def test_surrogate_pair_is_never_split() -> None:
    text = "a" * 66 + "😀" + "aaa"
    assert split_for_deliver(text) == ["a" * 66, "😀aaa"]
    parts = encode_submit("+15551234567", text)
    assert [part.text for part in parts] == ["a" * 66, "😀aaa"]


def test_wide_reference_leaves_less_room() -> None:
    assert count_segments("a" * 161, wide_reference=True) == Segmentation(GSM7, 2, 161, 152)
    assert count_segments("a" * 305).parts == 2
    assert count_segments("a" * 305, wide_reference=True).parts == 3
    assert count_segments("ж" * 133, wide_reference=True) == Segmentation(UCS2, 3, 133, 66)
    parts = encode_submit("+15551234567", "a" * 305, wide_reference=True, concat_reference=4660)
    assert [len(part.text) for part in parts] == [152, 152, 1]
    assert all(part.concat is not None and part.concat.wide for part in parts)


def test_forced_alphabets() -> None:
    assert count_segments("x" * 140, alphabet=DATA8) == Segmentation(DATA8, 1, 140, 140)
    assert count_segments("x" * 141, alphabet=DATA8) == Segmentation(DATA8, 2, 141, 134)
    assert count_segments("abc", alphabet=UCS2) == Segmentation(UCS2, 1, 3, 70)
    with pytest.raises(PduError, match="not in the GSM 7-bit alphabet"):
        count_segments("ж", alphabet=GSM7)


def test_too_many_parts_are_counted_but_not_encoded() -> None:
    text = "a" * (153 * 255 + 1)
    assert count_segments(text).parts == 256
    with pytest.raises(PduError, match="at most 255"):
        encode_submit("+15551234567", text)
    assert len(encode_submit("+15551234567", text[:-1])) == 255
