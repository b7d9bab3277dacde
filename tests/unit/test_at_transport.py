"""The transport: a pty (as a USB modem looks), socket:// and pyserial URL handlers."""

from __future__ import annotations

import asyncio
import os
import tty

import pytest
from smsgate_agent.transport import TransportError, open_transport


async def test_pty_read_write_and_hang_up() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    try:
        transport = await open_transport(os.ttyname(slave))
        async with asyncio.timeout(5):
            os.write(master, b"\r\nRDY\r\n")
            assert await transport.read() == b"\r\nRDY\r\n"
            await transport.write(b"AT\r")
            loop = asyncio.get_running_loop()
            got = await loop.run_in_executor(None, _read_blocking, master)
            assert got == b"AT\r"
            os.close(master)  # the cable is pulled
            master = -1
            with pytest.raises(TransportError):
                await transport.read()
        await transport.close()
        await transport.close()  # twice is fine
    finally:
        if master >= 0:
            os.close(master)
        os.close(slave)


def _read_blocking(fd: int) -> bytes:
    os.set_blocking(fd, True)
    try:
        return os.read(fd, 100)
    finally:
        os.set_blocking(fd, False)


async def test_socket_url() -> None:
    received: list[bytes] = []

    async def modem(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readexactly(3))
        writer.write(b"\r\nOK\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(modem, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(5):
            transport = await open_transport(f"socket://127.0.0.1:{port}")
            await transport.write(b"AT\r")
            assert await transport.read() == b"\r\nOK\r\n"
            with pytest.raises(TransportError):
                await transport.read()  # the server hung up
            await transport.close()
            assert received == [b"AT\r"]
    finally:
        server.close()
        await server.wait_closed()


async def test_socket_refused() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(TransportError):
        await open_transport(f"socket://127.0.0.1:{port}")


async def test_missing_device() -> None:
    with pytest.raises(TransportError):
        await open_transport("/dev/does-not-exist-smsgate")


async def test_url_handler_without_descriptor_runs_in_a_thread() -> None:
    # loop:// echoes what is written, like rfc2217:// it has no descriptor to poll.
    transport = await open_transport("loop://")
    try:
        async with asyncio.timeout(5):
            await transport.write(b"ATI\r")
            data = b""
            while len(data) < 4:
                data += await transport.read()
            assert data == b"ATI\r"
    finally:
        await transport.close()
    with pytest.raises(TransportError):
        await transport.read()
