"""A connection's writes at most one per window of a few milliseconds, each carrying all
that was published since the one before.

nats-py writes its outgoing buffer once per event-loop turn in which something was
published. An agent with hundreds of ports publishes a few messages per part in many
different turns, so nearly every turn cost a TCP write (and nats-server a read and a
reply write, and the agent a read of the replies). Here a write that comes within the
window of the one before waits for the window to end, and everything published meanwhile,
from any port, leaves with it; nats-server's replies to them come back together as well.
A write after a quiet window goes out at once, as nats-py's: a lone publish waits for
nothing, and a busy connection's round trips take up to one window longer.

This replaces nats-py's flusher task (`Client._flusher`, the coroutine it starts at every
connect and reconnect) with one that keeps the window. Everything else is nats-py's: its
buffer, its queue of flush requests, what it does with the buffer on a reconnect (sends
it on the new connection) and on close (sends it first).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from nats.aio.client import Client

log = logging.getLogger("smsgate.write_window")

# What the flusher uses of nats-py's client: its buffer, the queue that wakes the flusher,
# the transport, and what nats-py's flusher does with a failed write.
_CLIENT_INTERNALS = (
    "_flusher",
    "_flush_queue",
    "_pending",
    "_pending_data_size",
    "_transport",
    "_error_cb",
    "_process_op_err",
)


def gather_writes(client: Client, window: float) -> bool:
    """Have `client` (not yet connected) write at most once per `window` seconds; False
    where the installed nats-py lacks what this uses (its own flusher stays)."""
    if window <= 0:
        return False
    if not all(hasattr(client, name) for name in _CLIENT_INTERNALS):
        log.info("nats-py without the flusher this replaces: writes go out every turn")
        return False
    client._flusher = functools.partial(_flusher, client, window)  # type: ignore[method-assign]
    return True


async def _flusher(client: Any, window: float) -> None:
    """nats-py's flusher, writing at most once per `window` seconds: woken within the window
    of its last write, it sleeps the window out first, and every flush request made
    meanwhile is answered by that one write."""
    queue: asyncio.Queue[asyncio.Future[None]] = client._flush_queue
    loop = asyncio.get_running_loop()
    last = -window  # when it last wrote (loop time)
    while client.is_connected and not client.is_connecting:
        woken = [await queue.get()]
        try:
            wait = last + window - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                while not queue.empty():
                    woken.append(queue.get_nowait())
            if client._pending_data_size > 0:
                client._transport.writelines(client._pending[:])
                client._pending = []
                client._pending_data_size = 0
                last = loop.time()
                await client._transport.drain()
        except OSError as exc:
            await client._error_cb(exc)
            await client._process_op_err(exc)
            return
        except (asyncio.CancelledError, RuntimeError, AttributeError):
            # a reconnect or close cancels it (the buffer stays for the new connection, or
            # is written by the close); RuntimeError: the loop is closed
            return
        finally:
            for future in woken:
                if not future.done():
                    future.set_result(None)
