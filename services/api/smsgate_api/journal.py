"""The history's journal: the `queued` records of many requests in one message.

Each accepted message needs a `queued` record on SMS_EVENTS (its text and who sent it,
which the history store cannot read off the work queue). Published one per request,
that was a second stored message and a second ack for every request, as dear as the
job itself. Here the records that requests add during one turn of the event loop go
out together at the start of the next turn, as one `QueuedBatch`, and every request
waits for that batch's ack as well as its jobs' acks before it answers.

A request refused after its records went out (a job the queue did not take) takes
them back with a `MessagesWithdrawn` record; the history forgets those messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from smsgate import contracts, subjects
from smsgate.acks import Ack, AckPublisher
from smsgate.contracts import MessageQueued, MessagesWithdrawn, QueuedBatch

from smsgate_api.ids import fresh_id

log = logging.getLogger("smsgate.api.journal")

# A batch stays far below NATS's smallest usual max_payload (1 MB): a record's JSON
# is at most about 6 bytes per character of text (\\uXXXX escapes) plus its fields.
MAX_BATCH_BYTES = 256 * 1024
_RECORD_BYTES = 512


class _Batch:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.records: list[MessageQueued] = []
        self.size = 0
        self.stored: asyncio.Future[Ack] = loop.create_future()


class Journal:
    """Collects `queued` records for one turn of the loop and publishes them as one."""

    def __init__(self, publisher: AckPublisher) -> None:
        self._publisher = publisher
        self._open: _Batch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, records: Sequence[MessageQueued]) -> asyncio.Future[Ack]:
        """Put `records` in the batch going out next; its future resolves to the batch's
        ack (or raises why it was not stored). A request's records share one batch, and
        the future is the batch's: await it through `asyncio.shield`."""
        size = 0
        for record in records:
            size += _RECORD_BYTES + 6 * len(record.text)
        batch = self._open
        if batch is None or (batch.records and batch.size + size > MAX_BATCH_BYTES):
            batch = self._start()
        batch.records.extend(records)
        batch.size += size
        return batch.stored

    def open_batch(self) -> None:
        """Open the batch of this turn of the loop now, if none is: call it before the
        publishes whose records will join it.

        The batch's task is then scheduled ahead of nats-py's flusher, which the first
        publish of a turn wakes: the batch goes out in the same write to NATS as those
        jobs and its ack comes back with theirs, so a request is resumed once, not twice.
        (Opened after them, the batch went out a turn later, in a write of its own.)
        """
        if self._open is None:
            self._start()

    def _start(self) -> _Batch:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        batch = self._open = _Batch(self._loop)
        # A task starts at the next turn of the loop: by then every request of this turn
        # has added its records.
        task = self._loop.create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch

    async def _send(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
        if not batch.records:  # opened ahead of requests that added nothing after all
            _settle(batch.stored, ConnectionError("an empty batch is not published"))
            return
        message = QueuedBatch(
            event_id=f"journal:{fresh_id()}", time=contracts.utcnow(), records=batch.records
        )
        try:
            ack = await (
                await self._publisher.publish(
                    subjects.JOURNAL_QUEUED, contracts.encode(message), {}
                )
            )
        except Exception as exc:  # NATS away, an error ack, no ack: the batch is refused
            _settle(batch.stored, exc)
        else:
            if not batch.stored.done():
                batch.stored.set_result(ack)
        finally:
            # Cancelled (the API stopping): its requests must not wait forever.
            _settle(batch.stored, ConnectionError("the API is stopping"))

    async def withdraw(self, ids: Sequence[str]) -> None:
        """Tell the history that the messages of a refused request were never accepted."""
        if not ids:
            return
        message = MessagesWithdrawn(
            event_id=f"withdrawn:{fresh_id()}", time=contracts.utcnow(), ids=list(ids)
        )
        try:
            await (
                await self._publisher.publish(
                    subjects.JOURNAL_WITHDRAWN, contracts.encode(message), {}
                )
            )
        except Exception as exc:
            log.warning(
                "could not withdraw the queued records of a refused request (%s): the "
                "history may show %d message(s) as queued that were never accepted",
                exc,
                len(ids),
            )


def _settle(future: asyncio.Future[Ack], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        # Every request of the batch awaits it; should none be left, no warning either.
        future.exception()
