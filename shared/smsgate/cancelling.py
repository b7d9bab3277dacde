"""Stopping tasks for sure.

On CPython 3.11 `asyncio.wait_for`, which nats-py awaits for every request and flush,
swallows a cancellation that arrives as the future it waits for completes (CPython
gh-86296, fixed in 3.12): the task carries on with `cancelling()` above 0 and waits at its
next `await`, perhaps for ever. A stop that cancels a task once and waits for it can then
hang: seen in `smsgate dev` under load, a modem's inbox task back at its queue after its
cancellation was swallowed while handing over a delivery report.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("smsgate.cancelling")

RECANCEL_AFTER = 1.0  # seconds a cancelled task has to end before it is cancelled again


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until each has ended, cancelling again, each second, any
    that still runs. Their outcomes are theirs to report (as `gather(...,
    return_exceptions=True)` leaves them); a cancellation of the caller is not swallowed."""
    running = {task for task in tasks if not task.done()}
    for task in running:
        task.cancel()
    while running:
        _, running = await asyncio.wait(running, timeout=RECANCEL_AFTER)
        for task in running:
            log.warning("%s still ran after it was cancelled: cancelled again", task.get_name())
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
