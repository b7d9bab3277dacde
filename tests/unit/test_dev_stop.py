"""How `smsgate dev` stops its parts, and how it names a process's end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import pytest
from smsgate.metrics import remote
from smsgate_cli.dev import ended, stopped


async def test_a_part_that_stops_is_waited_for() -> None:
    done = asyncio.Event()

    async def part() -> None:
        await done.wait()

    task = asyncio.create_task(part(), name="agent")
    done.set()
    assert await stopped([task], patience=60) is True
    assert task.done()
    assert not task.cancelled()


async def test_a_part_that_swallows_its_stop_is_cancelled_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def part() -> None:
        # As the agent's modem tasks did once: the first cancellation is swallowed.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await asyncio.Event().wait()

    task = asyncio.create_task(part(), name="agent")
    await asyncio.sleep(0)
    task.cancel()  # what the part's own stop did, and lost
    with caplog.at_level(logging.ERROR):
        assert await stopped([task], patience=0.05) is False
    assert task.cancelled()
    assert "the agent did not stop within 0.05s: cancelled" in caplog.text


def test_how_a_process_ended_is_told() -> None:
    assert ended(0) == "exited with status 0"
    assert ended(3) == "exited with status 3"
    assert ended(-signal.SIGKILL) == "was killed by SIGKILL"
    assert ended(None) == "is still running"


async def test_remote_metrics_that_cannot_be_read_say_so_in_a_comment() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    text = await remote(f"http://127.0.0.1:{port}/metrics")()
    assert text.startswith(f"# http://127.0.0.1:{port}/metrics: not read (")
    assert text.endswith("\n")
