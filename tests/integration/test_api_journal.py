"""The API's journal on a real nats-server: the `queued` records of the requests accepted
in one turn of the event loop go out as one message, and each request gets its ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from smsgate import contracts, subjects
from smsgate.acks import AckPublisher
from smsgate.contracts import MessageQueued, QueuedBatch
from smsgate_api import journal
from smsgate_api.journal import Journal

from tests.conftest import Bus


def record(message_id: str, text: str = "hello") -> MessageQueued:
    return MessageQueued(
        event_id=f"{message_id}:queued",
        id=message_id,
        to="+15550001",
        text=text,
        user="u",
        time=contracts.utcnow(),
    )


@pytest.fixture
async def publisher(nats_bus: Bus) -> AsyncIterator[AckPublisher]:
    acks = AckPublisher(nats_bus.nc)
    await acks.start()
    yield acks
    await acks.stop()


async def stored_batch(nats_bus: Bus, seq: int) -> QueuedBatch:
    msg = await nats_bus.js.get_msg(subjects.EVENTS_STREAM, seq)
    assert msg.subject == subjects.JOURNAL_QUEUED
    return contracts.decode(msg.data or b"", QueuedBatch)


async def test_the_records_of_one_turn_go_out_as_one_message(
    nats_bus: Bus, publisher: AckPublisher
) -> None:
    log = Journal(publisher)
    # Nothing awaits between these: the requests of one turn of the loop.
    waiting = [log.add([record(f"m{i}")]) for i in range(4)]
    waiting.append(log.add([record("m4"), record("m5")]))  # one request, two recipients
    acks = [await future for future in waiting]
    assert {ack.seq for ack in acks} == {acks[0].seq}
    batch = await stored_batch(nats_bus, acks[0].seq)
    assert [r.id for r in batch.records] == ["m0", "m1", "m2", "m3", "m4", "m5"]
    # A request of a later turn gets a batch of its own.
    later = await log.add([record("m6")])
    assert later.seq == acks[0].seq + 1
    assert [r.id for r in (await stored_batch(nats_bus, later.seq)).records] == ["m6"]


async def test_a_full_batch_starts_another_and_keeps_a_requests_records_together(
    nats_bus: Bus, publisher: AckPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "MAX_BATCH_BYTES", 6000)
    log = Journal(publisher)
    text = "x" * 200  # about 1,700 bytes a record by the journal's reckoning
    first = log.add([record("a1", text), record("a2", text)])
    # Past the limit together with the first: a batch of its own, over the limit by itself.
    second = log.add([record("b1", text), record("b2", text), record("b3", text)])
    third = log.add([record("c1", "short")])  # still fits beside the second
    acks = [await first, await second, await third]
    assert acks[0].seq != acks[1].seq
    assert acks[1].seq == acks[2].seq
    assert [r.id for r in (await stored_batch(nats_bus, acks[0].seq)).records] == ["a1", "a2"]
    assert [r.id for r in (await stored_batch(nats_bus, acks[1].seq)).records] == [
        "b1",
        "b2",
        "b3",
        "c1",
    ]


async def test_a_batch_nats_refuses_fails_every_request_in_it(
    nats_bus: Bus, publisher: AckPublisher
) -> None:
    await nats_bus.js.delete_stream(subjects.EVENTS_STREAM)
    log = Journal(publisher)
    waiting = [log.add([record("m1")]), log.add([record("m2")])]
    for future in waiting:
        with pytest.raises(Exception, match=r"no response|stream"):
            await future


async def test_a_request_cancelled_while_it_waits_leaves_the_batch_to_the_others(
    nats_bus: Bus, publisher: AckPublisher
) -> None:
    # The queue waits for a shared batch: a client gone mid-request must not fail the
    # requests whose records went out with its own.
    from smsgate_api.queue import journal_failure_of

    log = Journal(publisher)
    gone = asyncio.create_task(journal_failure_of(log.add([record("m1")])))
    staying = asyncio.create_task(journal_failure_of(log.add([record("m2")])))
    await asyncio.sleep(0)
    gone.cancel()
    assert await staying is None
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_requests_jobs_and_their_batch_go_out_in_one_write(
    nats_bus: Bus, publisher: AckPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch is opened before the request's first publish wakes nats-py's flusher, so
    # it joins the same write as the jobs (and its ack comes back with theirs). Opened
    # after them, it went out a turn later, in a write of its own.
    from smsgate.contracts import SendJob
    from smsgate_api.queue import JobQueue

    log = Journal(publisher)
    queue = JobQueue(nats_bus.nc, nats_bus.js, nats_bus.buckets.messages, publisher, journal=log)
    transport = nats_bus.nc._transport
    assert transport is not None
    writes: list[list[bytes]] = []
    real_writelines = transport.writelines

    def writelines(frames: list[bytes]) -> None:
        writes.append(list(frames))
        real_writelines(frames)

    monkeypatch.setattr(transport, "writelines", writelines)
    job = SendJob(
        id=contracts.new_id(), to="+15550001", text="hello", user="u", created=contracts.utcnow()
    )
    [queued] = await queue.enqueue([(job, subjects.SEND_ANY)], claim_ids=False)
    monkeypatch.undo()
    assert queued.job is job
    carrying = [
        frames
        for frames in writes
        if any(subjects.SEND_ANY.encode() in f for f in frames)
        or any(subjects.JOURNAL_QUEUED.encode() in f for f in frames)
    ]
    assert len(carrying) == 1, carrying
    [frames] = carrying
    subjects_written = [f.split(b" ", 2)[1] for f in frames]
    assert subjects.SEND_ANY.encode() in subjects_written
    assert subjects.JOURNAL_QUEUED.encode() in subjects_written
    assert (subjects.MESSAGES_KV_PREFIX + job.id).encode() in subjects_written


async def test_a_batch_opened_ahead_that_gets_no_records_is_not_published(
    nats_bus: Bus, publisher: AckPublisher
) -> None:
    log = Journal(publisher)
    before = (await nats_bus.js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
    log.open_batch()
    # A later turn's records get a batch of their own, which is published.
    await asyncio.sleep(0.05)
    ack = await log.add([record("m1")])
    assert ack.seq == before + 1
    assert (await nats_bus.js.stream_info(subjects.EVENTS_STREAM)).state.last_seq == before + 1
