"""The whole chain with no mocks: HTTP /sendsms -> JetStream -> agent -> virtual modem over a
real pty (AT+CMGS in PDU mode) -> send result -> callback service -> a local HTTP receiver.

It is the gateway's own demo: `ye` to the carrier's 10086, who answers with a long balance
message. One send yields the three callbacks the gateway documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator

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
    SendPolicy,
    SimConfig,
)
from smsgate.embedded import free_port
from smsgate_agent.agent import run_agent
from smsgate_api.app import create_app
from smsgate_callback import run_callback
from smsgate_sim.network import CARRIER_BALANCE_REPLY
from smsgate_sim.simulator import Simulator

from tests.conftest import Bus
from tests.integration.callback_fixtures import Receiver, until

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
async def farm(nats_bus: Bus) -> AsyncIterator[tuple[str, Receiver, Simulator]]:
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
    )
    stop = asyncio.Event()
    services = [
        asyncio.create_task(run_agent(config, stop)),
        asyncio.create_task(run_callback(config, stop=stop)),
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


def callbacks(receiver: Receiver) -> list[dict[str, str]]:
    return [
        dict(urllib.parse.parse_qsl(h.query.decode(), keep_blank_values=True))
        for h in receiver.hits
    ]


async def test_gateway_demo_end_to_end(farm: tuple[str, Receiver, Simulator]) -> None:
    api, receiver, sim = farm
    query = urllib.parse.urlencode(
        {
            "username": USER,
            "password": PASSWORD,
            "phonenumber": "10086",
            "timeout": "30",
            "id": "edeb7540",
            "message": "ye",
        }
    )
    async with httpx.AsyncClient(timeout=40) as client:
        response = await client.get(f"{api}/sendsms?{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    record = body["report"]["0"]
    assert record["result"] == "sent"
    assert record["phonenumber"] == "10086"
    assert record["id"] == "edeb7540"
    assert record["port"] in {"1", "2"}

    # The modem really got one PDU for 10086 over its pty.
    [part] = sim.sent()
    assert part.to.endswith("10086")

    await until(lambda: len(receiver.hits) >= 3, "three callbacks: result, inbound, report", 30)
    by_type = {c["type"]: c for c in callbacks(receiver)}
    result = by_type["SMS-Status-Result"]
    assert result["status"] == "Sent"
    assert result["id"] == "edeb7540"
    assert result["num"] == "10086"
    report = by_type["SMS-Status-Report"]
    assert report["status"] == "Message received on handset"
    assert report["id"] == "edeb7540"
    inbound = by_type[""]
    assert inbound["num"] == "10086"
    assert inbound["message"] == CARRIER_BALANCE_REPLY  # multipart, joined
    assert inbound["port"] == record["port"]
