"""Writing jobs durably to the SMS_SEND work queue, all or nothing.

Each message gets a `queued` status in `sms_messages` and a job on its subject with
`Nats-Msg-Id` = message id. Acks are collected asynchronously (see publisher.py), so a
request with many recipients waits one round trip, not one per recipient, and requests
never wait for each other's acks.

A caller's id is claimed first with a KV `create`: when the id already exists, the
request is a repeat and is not queued again; its current status is returned instead.
Generated ids are unique, so their status write is sent without waiting for its ack.

All or nothing: every job of a request is published, then the acks are checked. If any
was refused (a full queue, NATS down), the jobs that did go in are deleted again by
stream sequence (`js.delete_msg`) and the claimed ids are released, and the request
fails with 503. The deletion runs within milliseconds of the publish; a job an agent
took in that window cannot be called back, and is logged.

With the history on, each job's `queued` record (the text and who sent it, which the
history store cannot read off the work queue) goes into the journal (journal.py), which
publishes the records of all requests accepted in one turn of the event loop as one
message. A request answers only once its jobs and its journal batch are stored; a refused
request deletes its jobs and withdraws its records, so it leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import (
    APIError,
    InvalidKeyError,
    KeyDeletedError,
    KeyNotFoundError,
    NoStreamResponseError,
)
from nats.js.kv import KeyValue
from smsgate import contracts, subjects
from smsgate.acks import Ack, AckPublisher
from smsgate.bus import CREATE_ONLY, SEND_DUPLICATE_WINDOW, WRONG_LAST_SEQUENCE
from smsgate.contracts import MessageQueued, MessageState, MessageStatus, SendJob

from smsgate_api.errors import ApiError, busy, unavailable
from smsgate_api.ids import fresh_id
from smsgate_api.journal import Journal

log = logging.getLogger("smsgate.api.queue")

_WINDOW_MARGIN = 60.0  # seconds: publish again only well inside the duplicate window
_MSG_ID = Header.MSG_ID.value


class Queued(msgspec.Struct, frozen=True):
    """The outcome for one job: newly queued, or a repeat with its existing status."""

    job: SendJob
    repeat: MessageStatus | None = None


class QueueRefused(Exception):
    """One publish was refused; carries the ApiError to answer."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def queued_status(job: SendJob) -> MessageStatus:
    return MessageStatus(
        id=job.id,
        to=job.to,
        state=MessageState.QUEUED,
        port=job.port,
        caller_id=job.caller_id,
        user=job.user,
        created=job.created,
        updated=job.created,
        digest=contracts.text_digest(job.text),
    )


def conflict(job: SendJob, stored: MessageStatus) -> ApiError | None:
    """A repeated id that names another message: a different recipient or text.

    Answering it with the stored status would report a send to a number that was never
    sent to, so it is refused instead. A status without a digest (written by an older
    agent) is compared by recipient only.
    """
    other_text = stored.digest is not None and stored.digest != contracts.text_digest(job.text)
    if stored.to == job.to and not other_text:
        return None
    what = f"recipient {stored.to}" if stored.to != job.to else "another text"
    return ApiError(
        409,
        "id_conflict",
        f"id {job.id!r} was already used for a message with {what}: "
        "a repeated id must repeat the same recipient and text; use a new id for a new message",
    )


def queued_record(job: SendJob) -> MessageQueued:
    """The job's `queued` record for the history."""
    return MessageQueued(
        # Unique per publish: a record withdrawn with a refused request must not be taken
        # for the record of a later request for the same id.
        event_id=f"{job.id}:queued:{fresh_id()[:12]}",
        id=job.id,
        to=job.to,
        text=job.text,
        port=job.port,
        status_report=job.status_report,
        user=job.user,
        caller_id=job.caller_id,
        time=job.created,
    )


def _unconfirmed(status: MessageStatus) -> bool:
    """A repeat whose job may never have reached the stream, and can safely be sent again.

    An id still `queued` may be all that is left of an attempt whose publish failed while
    NATS was away, its claim not released either. Within the duplicate window JetStream
    drops a second copy of a job that did arrive, so publishing again cannot queue it twice.
    """
    if status.state is not MessageState.QUEUED:
        return False
    age = (contracts.utcnow() - status.created).total_seconds()
    return age < SEND_DUPLICATE_WINDOW - _WINDOW_MARGIN


def _refusal(exc: BaseException) -> ApiError:
    if isinstance(exc, APIError) and "maximum messages" in (exc.description or ""):
        return busy("the send queue is full; try again later")
    if isinstance(exc, NoStreamResponseError):
        return unavailable("the SMS_SEND stream is not available; try again shortly")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return unavailable("NATS did not confirm the message in time; try again shortly")
    return unavailable(f"NATS refused the message ({exc}); try again shortly")


async def journal_failure_of(journaled: asyncio.Future[Ack] | None) -> BaseException | None:
    """Why the journal batch was not stored; None when it was (or there was none)."""
    if journaled is None:
        return None
    if journaled.done():  # no shield needed (the batch's future is never cancelled)
        return journaled.exception()
    try:
        # Shielded: the batch is shared, and a request cancelled while it waits must not
        # cancel it for the others.
        await asyncio.shield(journaled)
    except Exception as exc:
        return exc
    return None


# The ids among those given that a longer memory than the bus knows, with their status
# (the history store's; remembered.py).
Remembered = Callable[[Sequence[str]], Awaitable[dict[str, MessageStatus]]]


class JobQueue:
    """Publishes jobs and their first status for one NATS connection."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        messages: KeyValue,
        publisher: AckPublisher,
        *,
        journal: Journal | None = None,
        remembered: Remembered | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._publisher = publisher
        self._messages = messages
        self._journal = journal  # where each job's `queued` record goes, for the history
        # asked about a caller's id new to the bus: its status there expired (messages_ttl)
        self._remembered = remembered

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    def _check_connected(self) -> None:
        if not self._nc.is_connected:
            raise unavailable("not connected to NATS; try again shortly")

    async def enqueue(
        self, jobs: Sequence[tuple[SendJob, str]], *, claim_ids: bool
    ) -> list[Queued]:
        """Queue every (job, subject) or none; `claim_ids` for caller-given ids."""
        self._check_connected()
        if claim_ids:
            repeats = await self._claim([job for job, _ in jobs])
            conflicts = [
                error
                for job, _ in jobs
                if job.id in repeats and (error := conflict(job, repeats[job.id])) is not None
            ]
            if conflicts:
                await self._release([job.id for job, _ in jobs if job.id not in repeats])
                raise QueueRefused(conflicts[0])
        else:
            repeats = {}
            if self._journal is not None:
                # Before the first publish wakes nats-py's flusher: see Journal.open_batch.
                self._journal.open_batch()
            publisher = self._publisher
            for job, _ in jobs:
                key = subjects.MESSAGES_KV_PREFIX + job.id
                status = contracts.encode(queued_status(job))
                if not publisher.publish_unacked_now(key, status, CREATE_ONLY):
                    await publisher.publish_unacked(key, status, CREATE_ONLY)
        fresh: Sequence[tuple[SendJob, str]]
        again: Sequence[tuple[SendJob, str]]
        if repeats:
            fresh = [(job, subject) for job, subject in jobs if job.id not in repeats]
            again = [
                (job, subject)
                for job, subject in jobs
                if job.id in repeats and _unconfirmed(repeats[job.id])
            ]
        else:
            fresh, again = jobs, []
        try:
            if again:
                await self._publish_again(again)
            await self._publish_all(fresh)
        except QueueRefused:
            await self._release([job.id for job, _ in fresh])
            raise
        return [Queued(job, repeats.get(job.id)) for job, _ in jobs]

    async def _publish_again(self, jobs: Sequence[tuple[SendJob, str]]) -> None:
        """Publish repeats under their own Nats-Msg-Id: JetStream keeps one copy either way."""
        items = [(subject, contracts.encode(job), {_MSG_ID: job.id}) for job, subject in jobs]
        journaled = self._journal_records(jobs)
        results = await self._send(items)
        failures = [r for r in results if not isinstance(r, Ack)]
        journal_failure = await journal_failure_of(journaled)
        if journal_failure is not None:
            failures.append(journal_failure)
        if failures:
            if journaled is not None and journal_failure is None:
                await self._withdraw(jobs)
            raise QueueRefused(_refusal(failures[0]))

    def _journal_records(self, jobs: Sequence[tuple[SendJob, str]]) -> asyncio.Future[Ack] | None:
        """The jobs' `queued` records into the journal; the future of their batch's ack."""
        if self._journal is None or not jobs:
            return None
        return self._journal.add([queued_record(job) for job, _ in jobs])

    async def _withdraw(self, jobs: Sequence[tuple[SendJob, str]]) -> None:
        """Take a refused request's `queued` records back from the history."""
        if self._journal is not None:
            await self._journal.withdraw([job.id for job, _ in jobs])

    async def _acks(self, futures: list[asyncio.Future[Ack]]) -> list[Ack | BaseException]:
        # The futures resolve together (the publisher times out lost acks), so awaiting
        # them in turn costs no more than a gather.
        results: list[Ack | BaseException] = []
        for future in futures:
            try:
                results.append(await future)
            except Exception as exc:
                results.append(exc)
        return results

    async def _send(
        self, items: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> list[Ack | BaseException]:
        publisher = self._publisher
        futures: list[asyncio.Future[Ack]] = []
        try:
            for subject, payload, headers in items:
                future = publisher.publish_now(subject, payload, headers)
                if future is None:  # nats-py's own publish says what is wrong, or sends it
                    future = await publisher.publish(subject, payload, headers)
                futures.append(future)
        except (NatsError, OSError) as exc:
            for future in futures:
                future.cancel()
            return [exc] * len(items)
        return await self._acks(futures)

    async def _claim(self, jobs: list[SendJob]) -> dict[str, MessageStatus]:
        """Create each id's status; returns the repeats (ids that existed) and their status."""
        items = [
            (
                subjects.MESSAGES_KV_PREFIX + job.id,
                contracts.encode(queued_status(job)),
                dict(CREATE_ONLY),
            )
            for job in jobs
        ]
        results = await self._send(items)
        repeats: dict[str, MessageStatus] = {}
        claimed: list[str] = []
        failure: BaseException | None = None
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, Ack):
                claimed.append(job.id)
            elif isinstance(result, APIError) and result.err_code in WRONG_LAST_SEQUENCE:
                try:
                    status = await self._existing(job)
                except Exception as exc:
                    failure = exc
                    continue
                if status is None:
                    claimed.append(job.id)
                else:
                    repeats[job.id] = status
            else:
                failure = result
        if failure is not None:
            await self._release(claimed)
            raise QueueRefused(_refusal(failure))
        if claimed and self._remembered is not None:
            repeats |= await self._known_before(claimed)
        return repeats

    async def _known_before(self, claimed: list[str]) -> dict[str, MessageStatus]:
        """The ids new to the bus that were used before all the same (their status
        expired from `sms_messages`): repeats, their keys released again. When the
        history store cannot say, the request is refused: queueing might send twice."""
        assert self._remembered is not None
        try:
            known = await self._remembered(claimed)
        except Exception as exc:
            await self._release(claimed)
            raise QueueRefused(
                unavailable(
                    f"cannot tell whether a caller id was used before: the history store "
                    f"is not reachable ({exc}); try again shortly"
                )
            ) from None
        if known:
            await self._release(list(known))
        return known

    async def _existing(self, job: SendJob) -> MessageStatus | None:
        """The status stored under a taken id; None when it was deleted (then re-claimed)."""
        try:
            entry = await self._messages.get(job.id)
        except KeyDeletedError as exc:
            # Released by a failed request earlier: take the id over.
            await self._messages.update(
                job.id, contracts.encode(queued_status(job)), last=exc.entry.revision
            )
            return None
        except KeyNotFoundError:
            await self._messages.create(job.id, contracts.encode(queued_status(job)))
            return None
        try:
            return contracts.decode(entry.value or b"", MessageStatus)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return queued_status(job)

    async def _publish_all(self, jobs: Sequence[tuple[SendJob, str]]) -> None:
        items = [(subject, contracts.encode(job), {_MSG_ID: job.id}) for job, subject in jobs]
        # The records join this turn's journal batch, which goes out at the next turn; the
        # history folds its records in whatever order they come.
        journaled = self._journal_records(jobs)
        results = await self._send(items)
        if all(isinstance(r, Ack) for r in results) and any(
            isinstance(r, Ack) and r.duplicate for r in results
        ):
            await self._publish_withdrawn_again(items, results)
        failures = [r for r in results if not isinstance(r, Ack)]
        journal_failure = await journal_failure_of(journaled)
        if journal_failure is not None:
            failures.append(journal_failure)
        if not failures:
            return
        # A duplicate ack means an earlier publish of the same id holds the slot: keep it.
        sequences = [r.seq for r in results if isinstance(r, Ack) and not r.duplicate]
        await self._delete(sequences, subjects.SEND_STREAM)
        if journaled is not None and journal_failure is None:
            # Not those whose earlier copy holds the slot (a duplicate ack): that one is queued.
            await self._withdraw(
                [
                    (job, subject)
                    for (job, subject), result in zip(jobs, results, strict=True)
                    if not (isinstance(result, Ack) and result.duplicate)
                ]
            )
        raise QueueRefused(_refusal(failures[0]))

    async def _publish_withdrawn_again(
        self,
        items: Sequence[tuple[str, bytes, dict[str, str]]],
        results: list[Ack | BaseException],
    ) -> None:
        """A claimed id whose publish is a duplicate: an earlier copy was withdrawn by a
        refused request, but the stream still remembers its Nats-Msg-Id. Unless that copy
        is still queued, publish again under a fresh Nats-Msg-Id (into `results`)."""
        again = []
        for index, (item, ack) in enumerate(zip(items, results, strict=True)):
            if isinstance(ack, Ack) and ack.duplicate and not await self._still_queued(ack):
                again.append((index, item))
        if not again:
            return
        retried = await self._send(
            [
                (subject, payload, {_MSG_ID: f"{headers[_MSG_ID]}~{contracts.new_id()[:8]}"})
                for _, (subject, payload, headers) in again
            ]
        )
        for (index, _), result in zip(again, retried, strict=True):
            results[index] = result

    async def _still_queued(self, ack: Ack) -> bool:
        try:
            await self._js.get_msg(subjects.SEND_STREAM, ack.seq)
        except Exception:
            return False
        return True

    async def _delete(self, sequences: list[int], stream: str) -> None:
        async def one(seq: int) -> None:
            try:
                await self._js.delete_msg(stream, seq)
            except Exception as exc:
                log.warning(
                    "could not withdraw %s seq %d of a refused request (%s)%s",
                    stream,
                    seq,
                    exc,
                    ": an agent may already have it" if stream == subjects.SEND_STREAM else "",
                )

        await asyncio.gather(*(one(seq) for seq in sequences))

    async def _release(self, ids: list[str]) -> None:
        """Delete the statuses of a refused request, so a retry with the same id is new."""

        async def one(message_id: str) -> None:
            with contextlib.suppress(Exception):
                await self._messages.delete(message_id)

        await asyncio.gather(*(one(i) for i in ids))

    async def status(self, message_id: str) -> MessageStatus | None:
        """The latest status of a message, None when unknown or expired."""
        self._check_connected()
        try:
            entry = await self._messages.get(message_id)
        except (KeyNotFoundError, KeyDeletedError, InvalidKeyError):
            return None
        except (TimeoutError, NatsError, OSError) as exc:
            raise unavailable(f"could not read the message status: {exc}") from None
        return contracts.decode(entry.value or b"", MessageStatus)
