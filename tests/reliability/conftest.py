"""Each reliability scenario gets a nats-server of its own: some of them kill it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from smsgate import bus
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats

from tests.reliability.procs import Processes, processes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server with JetStream on a fresh store, stopped (or killed) at the end."""
    nats = EmbeddedNats(store_dir=tmp_path / "nats")
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


@pytest.fixture
async def client(server: EmbeddedNats) -> AsyncIterator[Client]:
    """The test's own connection, with the streams and buckets provisioned."""
    config = NatsConfig(url=server.url)
    nc = await bus.connect(config, name="reliability")
    await bus.provision(nc.jetstream(), config)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[Processes]:
    async with processes(tmp_path) as started:
        yield started
