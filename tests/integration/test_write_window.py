"""A connection that writes at most once per window (smsgate.write_window), against a real
nats-server: what is published within the window of a write leaves in the next one,
whichever turn of the loop published it; a publish after a quiet window leaves at once;
the connection carries on after the server went away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from smsgate import bus, subjects
from smsgate.acks import AckPublisher
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats
from smsgate.write_window import gather_writes

from tests.conftest import Bus

# Long beside the few microseconds between the publishes below, so all of them fall in it.
WINDOW = 0.5


class Writes:
    """Each write of a client's transport: the frames it carried."""

    def __init__(self, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        transport = client._transport
        assert transport is not None
        self.calls: list[list[bytes]] = []
        real = transport.writelines

        def writelines(frames: list[bytes]) -> None:
            self.calls.append(list(frames))
            real(frames)

        monkeypatch.setattr(transport, "writelines", writelines)

    def carrying(self, marker: bytes) -> list[list[bytes]]:
        return [frames for frames in self.calls if any(marker in frame for frame in frames)]


async def _write_now(acks: AckPublisher, marker: str) -> None:
    """One publish written and acked: a window starts with its write."""
    assert (await (await acks.publish(subjects.event("result", marker), b"{}", {}))).seq > 0


async def _publish_over_turns(client: Client, acks: AckPublisher, marker: str) -> list[int]:
    """Three acked publishes and three of nats-py's own, each pair in a turn of its own; the
    acks' sequences."""
    futures = []
    for index in range(3):
        subject = subjects.event("result", f"{marker}-{index}")
        futures.append(await acks.publish(subject, b"{}", {"Nats-Msg-Id": f"{marker}-{index}"}))
        await client.publish(f"{marker}.plain.{index}", b"x")
        await asyncio.sleep(0)
    return [(await future).seq for future in futures]


@pytest.fixture
async def windowed(nats_bus: Bus) -> AsyncIterator[Client]:
    client = await bus.connect(nats_bus.config, write_window=WINDOW)
    yield client
    await bus.close(client)


async def test_what_is_published_inside_the_window_leaves_in_one_write(
    windowed: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    acks = AckPublisher(windowed)
    await acks.start()
    await _write_now(acks, "first")
    writes = Writes(windowed, monkeypatch)
    seqs = await _publish_over_turns(windowed, acks, "win")
    await acks.stop()
    assert all(seq > 0 for seq in seqs)
    [frames] = writes.carrying(b"win")  # one write took all six
    assert sum(b"win" in frame for frame in frames) == 6


async def test_a_publish_after_a_quiet_window_is_written_at_once(
    windowed: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing written for a window: the flusher writes in its next turn, without waiting."""
    writes = Writes(windowed, monkeypatch)
    await windowed.publish("alone.here", b"x")
    for _ in range(3):  # the flusher's wake-up, its write
        await asyncio.sleep(0)
    assert len(writes.carrying(b"alone.here")) == 1


async def test_without_a_window_each_turn_writes_its_own(
    nats_bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the window changes: nats-py's own flusher writes once per turn."""
    client = await bus.connect(nats_bus.config)
    try:
        acks = AckPublisher(client)
        await acks.start()
        writes = Writes(client, monkeypatch)
        await _publish_over_turns(client, acks, "eager")
        await acks.stop()
        assert len(writes.carrying(b"eager")) == 3
    finally:
        await bus.close(client)


async def test_the_window_survives_the_server_going_and_coming_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed and started again on the same store and port: the client reconnects with its
    windowed flusher, publishes and their acks flow, and a window's still leave in one write."""
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    server.start()
    config = NatsConfig(url=server.url, ping_interval=0.5)
    client = await bus.connect(config, write_window=WINDOW, buffer_while_away=False)
    try:
        await bus.provision(client.jetstream(), config)
        acks = AckPublisher(client)
        await acks.start()
        before = await acks.publish(subjects.event("result", "b"), b"{}", {"Nats-Msg-Id": "b"})
        assert (await before).seq > 0
        # A write inside the window as the server dies: kept for the new connection, as
        # nats-py keeps its buffer (its ack may come or time out: either is an outcome).
        cut = await acks.publish(subjects.event("result", "c"), b"{}", {"Nats-Msg-Id": "c"})
        server.kill()
        async with asyncio.timeout(10):
            while client.is_connected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        server.start()
        async with asyncio.timeout(30):
            while not client.is_connected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await _write_now(acks, "again")
        writes = Writes(client, monkeypatch)
        seqs = await _publish_over_turns(client, acks, "back")
        assert all(seq > 0 for seq in seqs)
        [frames] = writes.carrying(b"back")
        assert sum(b"back" in frame for frame in frames) == 6
        await asyncio.gather(cut, return_exceptions=True)
        await acks.stop()
    finally:
        await bus.close(client)
        server.stop()


def test_a_client_without_what_the_window_uses_keeps_its_own_flusher() -> None:
    class Bare:  # a nats-py whose client changed
        pass

    assert not gather_writes(Bare(), 0.003)  # type: ignore[arg-type]
    client = Client()
    own = client._flusher
    assert not gather_writes(client, 0)  # no window asked for: nats-py's own
    assert client._flusher == own
    assert gather_writes(client, 0.003)
    assert client._flusher != own
