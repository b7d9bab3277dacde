"""Tasks stopped for sure, even when a cancellation is swallowed on the way."""

from __future__ import annotations

import asyncio

import pytest
from smsgate.cancelling import cancel_and_wait

GUARD = 30.0  # a hang fails the test instead of the suite


async def test_a_task_whose_cancellation_wait_for_swallowed_is_cancelled_again() -> None:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[int] = loop.create_future()
    handed_over = asyncio.Event()

    async def inbox() -> None:
        # As a report's hand-over awaits nats-py (asyncio.wait_for inside), then the queue.
        handed_over.set()
        await asyncio.wait_for(answer, 10)
        await asyncio.Event().wait()

    task = asyncio.create_task(inbox(), name="lte-1-urc")
    await handed_over.wait()
    await asyncio.sleep(0)  # the task now waits in wait_for
    answer.set_result(1)  # the answer and the stop in one turn of the loop: 3.11 loses the stop
    async with asyncio.timeout(GUARD):
        await cancel_and_wait(task)
    assert task.cancelled()


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    stubborn_started = asyncio.Event()

    async def stubborn() -> None:
        stubborn_started.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)  # takes its time to stop, then stops
                raise

    target = asyncio.create_task(stubborn())
    await stubborn_started.wait()
    stopper = asyncio.create_task(cancel_and_wait(target))
    await asyncio.sleep(0)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(GUARD):
            await stopper
    assert stopper.cancelled()


async def test_a_failed_task_is_waited_for_and_its_error_left_to_it() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)
