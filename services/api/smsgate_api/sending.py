"""Sending, shared by `/sendsms` and `/api/v1/messages`: ids, ports, queue, results.

Message ids: the caller's `id` is the message id when there is one recipient. With
several recipients, recipient i (counting from 0, as the report keys do) gets
`<id>-<i>`. Without an id each message gets a fresh 32-hex id that sorts by time
(`ids.new_message_id`: a UUIDv7's layout, the form of `contracts.new_id`). The caller's
id is kept in `caller_id` either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import msgspec
from smsgate import contracts
from smsgate.contracts import MessageState, SendJob

from smsgate_api.auth import User
from smsgate_api.ids import new_message_id
from smsgate_api.port_choice import ANY
from smsgate_api.queue import QueueRefused
from smsgate_api.runtime import ApiRuntime


class Submission(msgspec.Struct, frozen=True):
    """One request to send a text to one or more numbers."""

    user: User
    numbers: Sequence[str]
    text: str
    ports: Sequence[str] | None = None
    caller_id: str | None = None
    timeout: float = 0.0
    delivery_report: bool = True


class RecipientOutcome(msgspec.Struct, frozen=True):
    """What became of one recipient's message by the time the request answers."""

    id: str
    to: str
    state: MessageState
    time: dt.datetime
    port: str | None = None
    port_number: int | None = None
    reason: str | None = None
    caller_id: str | None = None
    repeat: bool = False


def message_ids(caller_id: str | None, count: int) -> list[str]:
    """One message id per recipient (see the module docstring)."""
    if caller_id is None:
        return [new_message_id() for _ in range(count)]
    if count == 1:
        return [caller_id]
    return [f"{caller_id}-{index}" for index in range(count)]


async def submit(runtime: ApiRuntime, request: Submission) -> list[RecipientOutcome]:
    """Queue one message per recipient, all or none, and wait for results if asked."""
    queue = runtime.require_queue()
    candidates = runtime.ports.route(request.user, request.ports)
    ids = message_ids(request.caller_id, len(request.numbers))
    now = contracts.utcnow()
    waiting = runtime.results.open(ids) if request.timeout > 0 else None
    try:
        jobs: list[tuple[SendJob, str]] = []
        for message_id, number in zip(ids, request.numbers, strict=True):
            route = ANY if candidates is None else runtime.ports.choose(candidates)
            job = SendJob(
                id=message_id,
                to=number,
                text=request.text,
                port=route.port,
                status_report=request.delivery_report and request.user.delivery_report,
                user=request.user.name,
                caller_id=request.caller_id,
                reply_to=None if waiting is None else waiting.reply_to,
                created=now,
                port_wait=runtime.config.api.port_wait,
            )
            jobs.append((job, route.subject))
        try:
            queued = await queue.enqueue(jobs, claim_ids=request.caller_id is not None)
        except QueueRefused as refused:
            runtime.metrics.message("refused", len(jobs))
            raise refused.error from None
        repeats = sum(1 for q in queued if q.repeat is not None)
        runtime.metrics.message("queued", len(queued) - repeats)
        if repeats:
            runtime.metrics.message("repeat", repeats)
        results: dict[str, contracts.SendResult] = {}
        if waiting is not None:
            for item in queued:
                if item.repeat is not None:  # its result goes to the first request's inbox
                    waiting.futures.pop(item.job.id).cancel()
            results = await runtime.results.wait(waiting, request.timeout)
    finally:
        if waiting is not None:
            runtime.results.close(waiting)

    outcomes: list[RecipientOutcome] = []
    ports = runtime.ports
    for item in queued:
        job, status = item.job, item.repeat
        result = results.get(job.id)
        if status is not None:
            outcomes.append(
                RecipientOutcome(
                    id=job.id,
                    to=job.to,
                    state=status.state,
                    time=status.updated,
                    port=status.port,
                    port_number=ports.number(status.port),
                    reason=status.reason,
                    caller_id=job.caller_id,
                    repeat=True,
                )
            )
        elif result is not None:
            outcomes.append(
                RecipientOutcome(
                    id=job.id,
                    to=job.to,
                    state=contracts.result_state(result.status),
                    time=result.time,
                    port=result.port,
                    port_number=(
                        result.port_number
                        if result.port_number is not None
                        else ports.number(result.port)
                    ),
                    reason=result.reason,
                    caller_id=job.caller_id,
                )
            )
        else:
            outcomes.append(
                RecipientOutcome(
                    id=job.id,
                    to=job.to,
                    state=MessageState.QUEUED,
                    time=now,
                    port=job.port,
                    port_number=ports.number(job.port),
                    caller_id=job.caller_id,
                )
            )
    return outcomes
