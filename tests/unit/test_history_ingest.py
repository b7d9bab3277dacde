"""How the history store writes a batch of events: a few statement shapes, whatever the batch."""

from __future__ import annotations

from smsgate_history.ingest import INSERT_SIZES, _padded


def test_an_insert_of_events_is_padded_to_one_of_a_few_sizes_by_repeating_its_last_row() -> None:
    for count in range(1, INSERT_SIZES[-1] + 1):
        rows = [(f"e{i}", "m", i, "queued", None, None) for i in range(count)]
        padded = _padded(rows)
        assert len(padded) in INSERT_SIZES
        assert padded[:count] == rows
        assert set(padded[count:]) <= {rows[-1]}
        # The smallest size that holds them: at most half as many rows again.
        assert not [size for size in INSERT_SIZES if count <= size < len(padded)]
    assert len(_padded([("e", "m", 0, "queued", None, None)] * 129)) == 192
