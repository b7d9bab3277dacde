"""A minimal keep-alive HTTP/1.1 receiver for callbacks: answers 200 and notes each request.

Small on purpose, so the receiver's own cost stays out of what the callback benchmarks
measure. `python -m bench.receiver PORT` serves in a process of its own; `GET /__count`
answers how many requests (other than itself) it has taken.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Receiver:
    """Counts requests; `on_request(time, target)` is called for each when set."""

    def __init__(self, on_request: Callable[[float, bytes], None] | None = None) -> None:
        self.count = 0
        self.on_request = on_request
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                line, _, headers = head.partition(b"\r\n")
                target = line.split(b" ", 2)[1] if line.count(b" ") >= 2 else b""
                length = 0
                for header in headers.split(b"\r\n"):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                if length:
                    await reader.readexactly(length)
                if target == b"/__count":
                    body = str(self.count).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    continue
                self.count += 1
                if self.on_request is not None:
                    self.on_request(arrived, target)
                writer.write(_OK)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def _main(port: int) -> None:
    receiver = Receiver()
    await receiver.start(port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_main(int(sys.argv[1])))
