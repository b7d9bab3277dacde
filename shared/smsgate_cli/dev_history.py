"""Dev mode's history store, in a process of its own.

Everything else of `smsgate dev` shares one process and one event loop. The history
store folds every message's records into SQLite; in that process it took about a
quarter of the samples under load (bench/RESULTS.md, issue 21), time the API then could
not answer in. It shares nothing with the rest but the bus and the database file (WAL:
the API reads while the store writes), so it runs beside them, with the same config
and logging, and stops when dev mode stops or is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal

import msgspec
from smsgate import logs
from smsgate.config import Config

WATCH_INTERVAL = 1.0  # seconds between two looks whether dev mode is still there
STOP_TIMEOUT = 10.0


async def run_history_process(config: Config, stop: asyncio.Event) -> None:
    """Run the history store in a child process until `stop`; an exit nobody asked for
    is an error (dev mode stops, as when any of its services fails)."""
    process = multiprocessing.get_context("spawn").Process(
        target=history_child,
        args=(msgspec.json.encode(config), os.getpid(), logs.settings()),
        name="smsgate-dev-history",
        daemon=True,
    )
    process.start()
    ended = asyncio.create_task(asyncio.to_thread(process.join))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            raise RuntimeError(f"the history store exited with code {process.exitcode}")
    finally:
        stopping.cancel()
        if process.is_alive():
            process.terminate()  # SIGTERM: it stops as `smsgate history-store` does
        await asyncio.wait([ended], timeout=STOP_TIMEOUT)
        if process.is_alive():
            process.kill()
            await ended


def history_child(config_json: bytes, parent: int, log_settings: tuple[str, str]) -> None:
    """The child's entry (spawned: it starts with nothing set up)."""
    logs.setup(*log_settings)
    config = msgspec.json.decode(config_json, type=Config)
    try:
        import uvloop
    except ImportError:  # a platform without uvloop
        asyncio.run(_until_told(config, parent))
        return
    uvloop.run(_until_told(config, parent))


async def _until_told(config: Config, parent: int) -> None:
    from smsgate_history.service import run_history_store

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(parent, stop))
    try:
        await run_history_store(config, stop)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    # Killed with -9, dev mode stops nothing: its history store stops by itself.
    while not stop.is_set():
        await asyncio.sleep(WATCH_INTERVAL)
        if os.getppid() != parent:
            stop.set()
