"""Where a virtual modem meets its agent: a raw pty (like /dev/ttyUSB0) or TCP (like ser2net).

Both can be unplugged and plugged back. A pty port's `device` is a symlink that stays put
(as /dev/serial/by-id does) and is re-pointed at a fresh pty on replug; a TCP port keeps
its port number.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

Receiver = Callable[[bytes], None]
# Bytes kept for a reader that does not read; beyond this the line drops them, as a UART would.
_MAX_BACKLOG = 1 << 20


class Endpoint(Protocol):
    """The device side of one port."""

    @property
    def device(self) -> str:
        """What the agent opens: a device path or `socket://host:port`."""
        ...

    @property
    def plugged(self) -> bool: ...

    async def plug(self) -> None:
        """Make the device appear (again)."""

    def unplug(self) -> None:
        """Make the device vanish: open handles fail as a pulled USB cable makes them fail."""

    def write(self, data: bytes) -> None:
        """Bytes from the modem to whoever has the device open; dropped if nobody does."""


class PtyEndpoint:
    """A raw pty whose stable path is a symlink to the current /dev/pts/N."""

    def __init__(self, name: str, directory: Path, receiver: Receiver) -> None:
        self.link = directory / name
        self.pts: str | None = None
        self._receiver = receiver
        self._master = -1
        self._slave = -1
        self._backlog = bytearray()
        self._loop = asyncio.get_running_loop()

    @property
    def device(self) -> str:
        return str(self.link)

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    async def plug(self) -> None:
        if self.plugged:
            return
        master, slave = os.openpty()
        # Raw both ways: no echo, no CR/LF translation, no signal from ^Z (Ctrl-Z ends a PDU).
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pts = os.ttyname(slave)
        # We hold the slave open so the pty does not hang up when the agent closes and reopens it.
        self._loop.add_reader(master, self._readable)
        temporary = self.link.with_name(f".{self.link.name}.new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.pts)
        temporary.replace(self.link)  # atomic: the link never points nowhere while plugged

    def unplug(self) -> None:
        if not self.plugged:
            return
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self._loop.remove_reader(self._master)
        self._loop.remove_writer(self._master)
        # Closing the master hangs up the slave: the agent's reads see EOF/EIO, writes fail.
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        self._backlog.clear()
        self.pts = None

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while nobody has the slave open; our own slave fd prevents that
        if data:
            self._receiver(data)

    def write(self, data: bytes) -> None:
        if not self.plugged:
            return
        if self._backlog:
            if len(self._backlog) < _MAX_BACKLOG:
                self._backlog += data
            return
        try:
            sent = os.write(self._master, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return
        if sent < len(data):
            self._backlog += data[sent:]
            self._loop.add_writer(self._master, self._writable)

    def _writable(self) -> None:
        try:
            sent = os.write(self._master, self._backlog)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(self._backlog)
        del self._backlog[:sent]
        if not self._backlog:
            self._loop.remove_writer(self._master)


class _Connection(asyncio.Protocol):
    def __init__(self, endpoint: TcpEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's TCP transport (the `smsgate sim` command line
        # runs on uvloop) is no subclass of asyncio.Transport, yet it is one in every way.
        self.transport = cast(asyncio.Transport, transport)
        self.endpoint._connected(self)

    def data_received(self, data: bytes) -> None:
        if self.endpoint._client is self:
            self.endpoint._receiver(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._disconnected(self)

    def reset(self) -> None:
        """Close with RST, as a dying ser2net host or a pulled cable looks to the agent."""
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class TcpEndpoint:
    """A TCP port that carries the modem's serial line, one client at a time (the newest wins)."""

    def __init__(self, host: str, port: int, receiver: Receiver) -> None:
        self.host = host
        self.port = port
        self._receiver = receiver
        self._server: asyncio.Server | None = None
        self._client: _Connection | None = None

    @property
    def device(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def plugged(self) -> bool:
        return self._server is not None

    async def plug(self) -> None:
        if self.plugged:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def unplug(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._server = None
        if self._client is not None:
            self._client.reset()
            self._client = None

    def _connected(self, connection: _Connection) -> None:
        # ser2net's "kickolduser": an agent that reconnects after a network glitch must not
        # be locked out by its own half-dead previous connection.
        if self._client is not None:
            self._client.reset()
        self._client = connection

    def _disconnected(self, connection: _Connection) -> None:
        if self._client is connection:
            self._client = None

    def write(self, data: bytes) -> None:
        client = self._client
        if client is None or client.transport is None:
            return
        if client.transport.get_write_buffer_size() < _MAX_BACKLOG:
            client.transport.write(data)
