"""Statements over lists of values come in a few lengths only, padded by repeating the last."""

from __future__ import annotations

import itertools

from smsgate.history.statements import padded, sizes_up_to


def test_the_lengths_grow_by_half_or_a_third_up_to_the_most() -> None:
    assert sizes_up_to(256) == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    assert sizes_up_to(500)[-3:] == (256, 384, 500)
    assert sizes_up_to(1) == (1,)
    for most in (2, 3, 500, 2000):
        sizes = sizes_up_to(most)
        assert all(small < large <= 2 * small for small, large in itertools.pairwise(sizes))


def test_a_list_is_padded_to_the_first_length_that_holds_it_by_repeating_its_last_value() -> None:
    sizes = sizes_up_to(256)
    for count in range(1, 257):
        rows = [(f"e{i}", "m", i) for i in range(count)]
        found = padded(rows, sizes)
        assert len(found) == min(size for size in sizes if size >= count)
        assert found[:count] == rows
        assert set(found[count:]) <= {rows[-1]}
    assert len(padded(list(range(129)), sizes)) == 192  # at most half as many again
    assert padded(["a", "b"], (2000,)) == ["a", "b"] + ["b"] * 1998
    assert padded([], sizes) == []
