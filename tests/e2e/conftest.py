"""The farm the end-to-end tests run against: every real part, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
import uvicorn
from smsgate.config import (
    AgentConfig,
    AgentPort,
    ApiUser,
    CallbackConfig,
    Config,
    HistoryConfig,
    SendPolicy,
    SimConfig,
)
from smsgate.embedded import free_port
from smsgate_agent.agent import run_agent
from smsgate_api.app import create_app
from smsgate_callback import run_callback
from smsgate_history.service import run_history_store
from smsgate_sim.network import CARRIER_BALANCE_REPLY
from smsgate_sim.simulator import Simulator

from tests.conftest import Bus
from tests.integration.callback_fixtures import Receiver

USER, PASSWORD = "smsuser", "smspwd"


@contextlib.asynccontextmanager
async def serve_api(config: Config) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client, asyncio.timeout(20):
        while (await client.get(f"{url}/readyz")).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def farm(nats_bus: Bus, tmp_path: Path) -> AsyncIterator[tuple[str, Receiver, Simulator]]:
    sim = Simulator(
        SimConfig(
            ports=2,
            part_time=(0.02, 0.05),
            report_delay=(0.05, 0.1),
            delivery_delay=(0.02, 0.05),
            control="",
            autoreply={"10086": CARRIER_BALANCE_REPLY},
        )
    )
    await sim.start()
    receiver = Receiver()
    await receiver.start()
    config = Config(
        nats=nats_bus.config,
        api=msgspec.structs.replace(Config().api, users=[ApiUser(name=USER, password=PASSWORD)]),
        agent=AgentConfig(
            name="e2e",
            ports=[AgentPort(name=n, device=d) for n, d in sim.devices.items()],
            policy=SendPolicy(min_interval=0, jitter=0),
            heartbeat=0.5,
        ),
        callback=CallbackConfig(url=receiver.url, backoff_initial=0.05, backoff_max=0.2),
        history=HistoryConfig(url=f"sqlite:///{tmp_path / 'history.db'}"),
    )
    stop = asyncio.Event()
    services = [
        asyncio.create_task(run_agent(config, stop)),
        asyncio.create_task(run_callback(config, stop=stop)),
        asyncio.create_task(run_history_store(config, stop)),
    ]
    try:
        async with serve_api(config) as api:
            yield api, receiver, sim
    finally:
        stop.set()
        for service in services:
            async with asyncio.timeout(30):
                await service
        await receiver.stop()
        await sim.stop()
