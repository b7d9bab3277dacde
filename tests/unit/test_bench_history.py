"""The history bench's stream: the `queued` records as the API's journal publishes them."""

from __future__ import annotations

from smsgate.contracts import MessageQueued, MessageSending, QueuedBatch

from bench.bench_history import events, journaled


def test_queued_records_go_in_journal_batches_and_nothing_else_moves() -> None:
    stream = list(events(40, spacing=0.001))
    published = list(journaled(iter(stream), 14))

    batches = [e for e in published if isinstance(e, QueuedBatch)]
    assert [len(b.records) for b in batches] == [14, 14, 8]  # 36 sent, 4 inbound
    assert not any(isinstance(e, MessageQueued) for e in published)
    # Every record is there once, in the stream's order; the other events unchanged.
    records = [r for b in batches for r in b.records]
    assert records == [e for e in stream if isinstance(e, MessageQueued)]
    others = [e for e in published if not isinstance(e, QueuedBatch)]
    assert others == [e for e in stream if not isinstance(e, MessageQueued)]
    # A batch goes out when its last record is in: before that message's `sending`.
    first = published.index(batches[0])
    taken = [e.id for e in published if isinstance(e, MessageSending)]
    before = {e.id for e in published[:first] if isinstance(e, MessageSending)}
    assert batches[0].records[-1].id in taken
    assert batches[0].records[-1].id not in before
    assert batches[0].time == batches[0].records[-1].time


def test_a_journal_of_one_leaves_each_record_alone() -> None:
    stream = list(events(12, spacing=0.001))
    assert list(journaled(iter(stream), 1)) == stream
