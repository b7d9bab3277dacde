"""Shared fixtures: a real nats-server for the session, fresh streams for each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import ServerError
from smsgate import bus
from smsgate.config import NatsConfig
from smsgate.embedded import EmbeddedNats

SHARED = Path(__file__).resolve().parents[2] / "shared"

pytest_plugins = ["tests.history_fixtures"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One real nats-server with JetStream on a random port and a temporary store."""
    server = EmbeddedNats(store_dir=tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_config(nats_server: EmbeddedNats) -> NatsConfig:
    return NatsConfig(url=nats_server.url)


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext
    buckets: bus.Buckets
    config: NatsConfig


async def _provision_anew(js: JetStreamContext, config: NatsConfig) -> bus.Buckets:
    # nats-server removes a deleted stream's store in the background: a stream of the same
    # name created at once can fail with "error creating store for stream" (10049).
    for _ in range(20):
        try:
            return await bus.provision(js, config)
        except ServerError as exc:
            if exc.err_code != 10049:
                raise
            await asyncio.sleep(0.1)
    return await bus.provision(js, config)


async def fresh_bus(config: NatsConfig) -> Bus:
    """A connection and a fresh set of streams and buckets (old ones deleted first)."""
    nc = await bus.connect(config, name="pytest")
    js = nc.jetstream()
    for name in await js.streams_info():
        await js.delete_stream(name.config.name or "")
    buckets = await _provision_anew(js, config)
    return Bus(nc=nc, js=js, buckets=buckets, config=config)


@pytest.fixture
async def nats_bus(nats_config: NatsConfig) -> AsyncIterator[Bus]:
    """A connection and a fresh set of streams and buckets (old ones deleted first)."""
    fresh = await fresh_bus(nats_config)
    yield fresh
    await fresh.nc.close()
