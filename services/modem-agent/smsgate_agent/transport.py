"""The byte pipe to one modem: a serial device, a pty, `socket://` or `rfc2217://`.

Everything above this module sees only `Transport` (read, write, close), so a USB modem,
a virtual modem on a pty and a modem behind a TCP serial server look the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import sys
import termios
import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

import serial

READ_SIZE = 4096


class TransportError(ConnectionError):
    """The port could not be opened, or it went away (unplugged, reset, closed)."""


class Transport(Protocol):
    """A bidirectional byte stream to a modem."""

    async def read(self) -> bytes:
        """The next bytes from the modem; raises TransportError when the port is gone."""
        ...

    async def write(self, data: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Hand `data` to the modem; raises TransportError when the port is gone, and
        TimeoutError when the modem does not take it within `timeout` seconds."""
        ...

    async def close(self) -> None:
        """Release the port. Safe to call twice."""
        ...


class StreamTransport:
    """A transport over an asyncio stream pair (`socket://`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str):
        self._reader = reader
        self._writer = writer
        self._name = name
        self._closed = False

    def __repr__(self) -> str:
        return f"<StreamTransport {self._name}>"

    async def read(self) -> bytes:
        if self._closed:
            raise TransportError(f"{self._name}: closed")
        try:
            data = await self._reader.read(READ_SIZE)
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self._name}: {exc}") from exc
        if not data:
            raise TransportError(f"{self._name}: end of stream")
        return data

    async def write(self, data: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self._closed or self._writer.is_closing():
            raise TransportError(f"{self._name}: closed")
        try:
            self._writer.write(data)
            if not self._writer.transport.get_write_buffer_size():
                # All with the kernel: no wait and no timer. 500 modems coming up at once
                # write ~12,000 commands; a timeout scope each was a third of the CPU the
                # bring-up took in a profile (py-spy, `scripts/bench scale`).
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except (OSError, serial.SerialException) as exc:
            raise TransportError(f"{self._name}: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        # A vanished device may fail on close; it is gone either way.
        with contextlib.suppress(OSError, serial.SerialException, asyncio.TimeoutError):
            async with asyncio.timeout(2.0):
                await self._writer.wait_closed()


class DeviceTransport:
    """A serial device or pty on its own descriptor, polled by the event loop itself.

    pyserial-asyncio reads through `select.select`, which fails on descriptors above
    1023, and opens two pipes per port besides: an agent stopped at about 200 ports.
    Here each port costs one descriptor, and a read is one `os.read`.
    """

    _HIGH_WATER = 1 << 16  # stop reading while this much is unread

    def __init__(self, fd: int, name: str) -> None:
        self._fd = fd
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._reading = True
        self._waiter: asyncio.Future[None] | None = None
        self._error: TransportError | None = None
        self._closed = False
        self._write_lock = asyncio.Lock()
        self._loop.add_reader(fd, self._on_readable)

    def __repr__(self) -> str:
        return f"<DeviceTransport {self._name}>"

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the pty's other side or the USB device went away
            self._fail(TransportError(f"{self._name}: {exc}"))
            return
        if not data:
            self._fail(TransportError(f"{self._name}: end of stream"))
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= self._HIGH_WATER:
            self._loop.remove_reader(self._fd)
            self._reading = False
        self._wake()

    def _fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        while True:
            if self._chunks:
                data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if not self._reading and not self._closed and self._error is None:
                    self._loop.add_reader(self._fd, self._on_readable)
                    self._reading = True
                return data
            if self._closed:
                raise TransportError(f"{self._name}: closed")
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter

    async def write(self, data: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self._closed or self._error is not None:
            raise TransportError(f"{self._name}: closed")
        async with self._write_lock:
            view = memoryview(data)
            deadline = None if timeout is None else self._loop.time() + timeout
            while view:
                try:
                    written = os.write(self._fd, view)
                except (BlockingIOError, InterruptedError):
                    written = 0
                except OSError as exc:
                    raise TransportError(f"{self._name}: {exc}") from exc
                view = view[written:]
                if view:
                    # The device is full (a modem holding off with flow control): wait.
                    async with asyncio.timeout_at(deadline):
                        await self._writable()

    async def _writable(self) -> None:
        if self._closed:
            raise TransportError(f"{self._name}: closed")
        ready: asyncio.Future[None] = self._loop.create_future()

        def writable() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(self._fd, writable)
        try:
            await ready
        finally:
            self._loop.remove_writer(self._fd)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        self._loop.remove_writer(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._wake()


def open_device(path: str, baudrate: int) -> int:
    """Open a serial device (or pty) for exclusive, raw, non-blocking use; its descriptor."""
    speed = getattr(termios, f"B{baudrate}", None)
    if speed is None:
        raise ValueError(f"unsupported baud rate {baudrate}")
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        try:
            # As pyserial's exclusive=True: a second agent on the same device fails here.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise OSError(exc.errno, f"{path} is in use by another process") from exc
        iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
        iflag &= ~(
            termios.IGNBRK
            | termios.BRKINT
            | termios.PARMRK
            | termios.ISTRIP
            | termios.INLCR
            | termios.IGNCR
            | termios.ICRNL
            | termios.IXON
            | termios.IXOFF
            | termios.IXANY
            | termios.INPCK
        )
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
        cflag |= termios.CS8 | termios.CLOCAL | termios.CREAD
        cc[termios.VMIN], cc[termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])
        try:
            # Raise DTR and RTS, as pyserial does on open: many modems ignore a TE without DTR.
            bits = (termios.TIOCM_DTR | termios.TIOCM_RTS).to_bytes(4, sys.byteorder)
            fcntl.ioctl(fd, termios.TIOCMBIS, bits)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTTY):  # a pty has no modem lines
                raise
        termios.tcflush(fd, termios.TCIFLUSH)
    except BaseException:
        os.close(fd)
        raise
    return fd


class ThreadTransport:
    """A transport over a blocking pyserial port, read by a thread of its own.

    Used for URL handlers that have no file descriptor to poll (`rfc2217://`).
    One thread per port keeps a slow port from taking threads from the shared pool.
    """

    _POLL = 0.2  # seconds a blocking read waits, so close() is noticed promptly

    def __init__(self, port: Any, name: str) -> None:
        self._port = port
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._stop = threading.Event()
        self._write_lock = asyncio.Lock()
        port.timeout = self._POLL
        self._thread = threading.Thread(target=self._pump, name=f"serial-{name}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<ThreadTransport {self._name}>"

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._port.read(max(1, min(READ_SIZE, self._port.in_waiting or 1)))
            except Exception as exc:  # any failure of the port ends the stream
                self._put(exc)
                return
            if data:
                self._put(data)

    def _put(self, item: bytes | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def read(self) -> bytes:
        if self._stop.is_set() and self._queue.empty():
            raise TransportError(f"{self._name}: closed")
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._stop.set()
            raise TransportError(f"{self._name}: {item}") from item
        return item

    async def write(self, data: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self._stop.is_set():
            raise TransportError(f"{self._name}: closed")
        async with self._write_lock, asyncio.timeout(timeout):
            try:
                await asyncio.to_thread(self._port.write, data)
            except Exception as exc:
                raise TransportError(f"{self._name}: {exc}") from exc

    async def close(self) -> None:
        if self._stop.is_set() and not self._thread.is_alive():
            return
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 2.0)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._port.close)
        self._queue.put_nowait(TransportError(f"{self._name}: closed"))


async def open_transport(
    device: str,
    *,
    baudrate: int = 115200,
    timeout: float = 10.0,  # noqa: ASYNC109 - a TCP connect to a dead host must not hang
) -> Transport:
    """Open `device`: a path, `socket://host:port` or `rfc2217://host:port`."""
    try:
        async with asyncio.timeout(timeout):
            return await _open(device, baudrate)
    except TimeoutError as exc:
        raise TransportError(f"{device}: open timed out") from exc
    except (OSError, ValueError, serial.SerialException) as exc:
        raise TransportError(f"{device}: {exc}") from exc


async def _open(device: str, baudrate: int) -> Transport:
    scheme = urlsplit(device).scheme if "://" in device else ""
    if scheme == "socket":
        # pyserial's socket:// handler connects with a blocking call, which would stall
        # every other modem on the loop while a remote serial server is unreachable.
        parts = urlsplit(device)
        if not parts.hostname or not parts.port:
            raise ValueError("socket:// needs host:port")
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return StreamTransport(reader, writer, device)
    if not scheme:
        return DeviceTransport(open_device(device, baudrate), device)
    # rfc2217:// and other pyserial URL handlers: no pollable descriptor, so a thread.
    port = await asyncio.to_thread(serial.serial_for_url, device, baudrate=baudrate, timeout=0.2)
    return ThreadTransport(port, device)
