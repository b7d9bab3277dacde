"""Dev mode's history store in a process of its own: it folds the bus into the history,
stops with dev mode, and an exit nobody asked for stops dev mode (as any service's)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from smsgate import contracts, subjects
from smsgate.config import Config, HistoryConfig
from smsgate.contracts import QueuedBatch
from smsgate.history import search
from smsgate.history.database import Database
from smsgate.history.search import Filters, Viewer
from smsgate_cli.dev_history import _watch_parent, run_history_process

from tests.conftest import Bus
from tests.integration.test_history_store import T0, queued


def _child() -> multiprocessing.process.BaseProcess:
    [child] = [p for p in multiprocessing.active_children() if p.name == "smsgate-dev-history"]
    return child


async def test_the_store_runs_in_a_child_and_stops_with_dev_mode(
    nats_bus: Bus, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    config = Config(nats=nats_bus.config, history=HistoryConfig(url=url))
    batch = QueuedBatch(event_id="journal:1", time=T0, records=[queued("m1", "+1555", "hi")])
    await nats_bus.js.publish(subjects.JOURNAL_QUEUED, contracts.encode(batch))
    stop = asyncio.Event()
    task = asyncio.create_task(run_history_process(config, stop))
    db = Database(url, size=1, name="test")
    try:
        for _ in range(600):
            await asyncio.sleep(0.05)
            try:
                page = await search.page(db, Filters(), Viewer(name="x", admin=True))
            except Exception:  # the child has not created the tables yet
                continue
            if page.messages:
                break
        assert [(m.id, m.text) for m in page.messages] == [("m1", "hi")]
        child = _child()
        assert child.pid != os.getpid()
        stop.set()
        await task
        assert not child.is_alive()
        assert child.exitcode == 0
    finally:
        stop.set()
        await task
        await db.close()


async def test_a_history_store_that_dies_is_an_error(nats_bus: Bus, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    config = Config(nats=nats_bus.config, history=HistoryConfig(url=url))
    stop = asyncio.Event()
    task = asyncio.create_task(run_history_process(config, stop))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if any(p.name == "smsgate-dev-history" for p in multiprocessing.active_children()):
            break
    child = _child()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="history store exited with code -9"):
        await task


async def test_the_child_stops_by_itself_once_dev_mode_is_gone() -> None:
    stop = asyncio.Event()
    # A parent pid that is not this process's parent: as if dev mode were killed with -9.
    await asyncio.wait_for(_watch_parent(os.getppid() + 1_000_000, stop), 30)
    assert stop.is_set()
