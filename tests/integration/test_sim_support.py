"""Raw AT bytes to and from a virtual modem over a real pty or TCP socket (no tests here).

`Line` plays the agent's part without the agent's code: it writes command bytes and reads
until a final result code or URC, so the tests see exactly what a modem would put on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from typing import Any

import serial_asyncio
from smsgate.pdu import SubmitPart, encode_submit

# Long enough for any simulated step; a test waits on this only when something is broken.
PATIENCE = 10.0
FINAL = re.compile(rb"\r\n(OK|ERROR|COMMAND NOT SUPPORT|\+CM[ES] ERROR: [^\r]*)\r\n")


class Line:
    """One open device: what the agent would hold."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, device: str) -> Line:
        """A pty path through pyserial-asyncio (the agent's path), or a plain TCP socket."""
        if device.startswith("socket://"):
            host, _, port = device.removeprefix("socket://").rpartition(":")
            reader, writer = await asyncio.open_connection(host, int(port))
        else:
            connection: Any = await serial_asyncio.open_serial_connection(
                url=device, baudrate=115200
            )
            reader, writer = connection
        return cls(reader, writer)

    @classmethod
    async def open_raw(cls, path: str) -> Line:
        """A pty opened with os.open and driven by the event loop (epoll, no fd limit).

        pyserial reads with select(), which fails for descriptors above 1023: hundreds of
        ports in one process need this path.
        """
        loop = asyncio.get_running_loop()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        reader = asyncio.StreamReader()
        read_pipe = os.fdopen(fd, "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_pipe)
        write_pipe = os.fdopen(os.dup(fd), "wb", buffering=0)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), write_pipe
        )
        return cls(reader, asyncio.StreamWriter(transport, protocol, None, loop))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):  # the device may have vanished (unplug tests)
            await self.writer.wait_closed()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until(self, pattern: bytes | re.Pattern[bytes]) -> bytes:
        """Everything up to the end of the first match of `pattern`; the rest stays buffered."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        while True:
            match = regex.search(self.buffer)
            if match:
                out, self.buffer = self.buffer[: match.end()], self.buffer[match.end() :]
                return out
            chunk = await asyncio.wait_for(self.reader.read(65536), PATIENCE)
            if not chunk:
                raise EOFError(f"line closed; got {self.buffer!r}")
            self.buffer += chunk

    async def urc(self, prefix: bytes) -> bytes:
        """Read through the next line starting with `prefix`; returns that whole line."""
        return (await self.until(re.compile(re.escape(prefix) + rb"[^\r]*\r\n"))).rsplit(
            b"\r\n", 2
        )[-2]

    async def lines_until(self, done: Callable[[bytes], bool]) -> bytes:
        """Read line by line until `done(everything read so far)` holds."""
        seen = b""
        while not done(seen):
            seen += await self.until(b"\r\n")
        return seen

    async def final(self) -> bytes:
        return await self.until(FINAL)

    async def at(self, command: str) -> bytes:
        """Send a command line, return everything up to and including its final result."""
        await self.write(command.encode() + b"\r")
        return await self.final()

    async def send_pdu(self, part: SubmitPart) -> bytes:
        """AT+CMGS=<n>, wait for the prompt, then the PDU and Ctrl-Z; returns up to the result."""
        await self.write(f"AT+CMGS={part.tpdu_length}\r".encode())
        await self.until(b"> ")
        await self.write(part.pdu.encode() + b"\x1a")
        return await self.final()

    async def send_text(self, number: str, text: str, **options: Any) -> list[int]:
        """Send every part of `text`; the TP-MRs that +CMGS gave back."""
        references = []
        for part in encode_submit(number, text, **options):
            answer = await self.send_pdu(part)
            match = re.search(rb"\+CMGS: (\d+)", answer)
            assert match, answer
            references.append(int(match.group(1)))
        return references


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (by polling state, never by asserting on time) until `condition()` holds."""
    for _ in range(int(PATIENCE / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise TimeoutError("the simulator never got there")


async def quiet(line: Line) -> None:
    """Echo off and numeric errors, as an agent's init would set them."""
    await line.at("ATE0")
    await line.at("AT+CMEE=1")
