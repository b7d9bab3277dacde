"""Every service started as its command line starts it (`python -m smsgate_cli <service>`,
uvloop included), with both simulator transports, talking to each other as a farm."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
from smsgate.config import (
    AgentConfig,
    AgentPort,
    ApiUser,
    CallbackConfig,
    Config,
    NatsConfig,
    SendPolicy,
    SimConfig,
)
from smsgate.embedded import EmbeddedNats, free_port

from tests.integration.callback_fixtures import Receiver
from tests.reliability.procs import Processes, api_config, processes, wait_ready

USER, PASSWORD = "smsuser", "smspwd"
PATIENCE = 60.0


async def device_map(path: Path, procs: Processes) -> dict[str, str]:
    """The {port: device} the simulator writes once its devices are up."""
    async with asyncio.timeout(PATIENCE):
        while not await asyncio.to_thread(path.exists):
            if not all(s.alive for s in procs.services):
                raise AssertionError(f"a service exited: {procs.logs()}")
            await asyncio.sleep(0.05)
    devices: dict[str, str] = json.loads(await asyncio.to_thread(path.read_text))
    return devices


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_farm_of_command_lines(
    transport: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    nats = NatsConfig(url=nats_server.url)
    receiver = Receiver()
    await receiver.start()
    try:
        async with processes(tmp_path) as procs:
            sim = SimConfig(
                ports=2,
                transport="tcp" if transport == "tcp" else "pty",
                part_time=0.02,
                report_delay=0.05,
                delivery_delay=0.02,
                control="",
                map_file=str(tmp_path / "devices.json"),
                device_dir=str(tmp_path / "dev"),
                prefix=f"{transport}cl-",
            )
            procs.start("sim", "sim", Config(sim=sim))
            devices = await device_map(tmp_path / "devices.json", procs)
            if transport == "tcp":
                assert all(d.startswith("socket://") for d in devices.values())
            agent_metrics = f"127.0.0.1:{free_port()}"
            callback_metrics = f"127.0.0.1:{free_port()}"
            agent = AgentConfig(
                name=f"cl-{transport}",
                ports=[AgentPort(name=n, device=d) for n, d in devices.items()],
                policy=SendPolicy(min_interval=0, jitter=0),
                heartbeat=0.5,
                metrics_listen=agent_metrics,
            )
            procs.start("agent", "agent", Config(nats=nats, agent=agent))
            callback = CallbackConfig(
                url=receiver.url, reports=False, metrics_listen=callback_metrics
            )
            procs.start("callback", "callback", Config(nats=nats, callback=callback))
            user = ApiUser(name=USER, password=PASSWORD)
            api = procs.start("api", "api", api_config(nats, [user]))
            await wait_ready(api)
            # Two recipients, the same number twice: each callback names its own message.
            query = {
                "username": USER,
                "password": PASSWORD,
                "phonenumber": "10048,10048",
                "message": "hello",
                "id": f"t4{transport}",
                "timeout": "30",
            }
            async with httpx.AsyncClient(timeout=PATIENCE) as http:
                reply = (await http.get(f"{api.url}/sendsms", params=query)).json()
                report = reply["report"]
                assert [report[k]["result"] for k in ("0", "1")] == ["sent", "sent"], (
                    reply,
                    procs.logs(),
                )
                assert [report[k]["id"] for k in ("0", "1")] == [
                    f"t4{transport}-0",
                    f"t4{transport}-1",
                ]
                async with asyncio.timeout(PATIENCE):
                    while len(receiver.hits) < 2:  # noqa: ASYNC110 - the receiver fills a list
                        await asyncio.sleep(0.05)
                ids = sorted(dict(hit.params)["id"] for hit in receiver.hits)
                assert ids == [f"t4{transport}-0", f"t4{transport}-1"]
                for message_id in ids:
                    status = await http.get(
                        f"{api.url}/api/v1/messages/{message_id}", auth=(USER, PASSWORD)
                    )
                    assert status.status_code == 200, status.text
                # Every service is scraped: the agent and the callback service too.
                text = (await http.get(f"http://{agent_metrics}/metrics")).text
                sent = [
                    ln for ln in text.splitlines() if ln.startswith("smsgate_agent_sent_total{")
                ]
                assert sum(float(ln.split()[-1]) for ln in sent) == 2, text
                assert {f'port="{name}"' for name in devices} <= {
                    ln.split("{")[1].split("}")[0] for ln in sent
                }
                assert "# TYPE smsgate_agent_signal_dbm gauge" in text
                text = (await http.get(f"http://{callback_metrics}/metrics")).text
                delivered = (
                    'smsgate_callback_deliveries_total{webhook="gateway",outcome="delivered"}'
                )
                assert f"{delivered} 2" in text, text
                health = await http.get(f"http://{callback_metrics}/healthz")
                assert health.status_code == 200
            logs = procs.logs()
            for name in ("sim", "agent"):
                assert "Traceback" not in logs[name], logs[name]
                assert "AssertionError" not in logs[name], logs[name]
            for service in procs.services:
                # uvicorn ends the API by re-raising the SIGTERM it handled: a clean stop.
                clean = (0, -signal.SIGTERM) if service.kind == "api" else (0,)
                assert await service.terminate() in clean, service.log()
    finally:
        await receiver.stop()


async def test_every_api_worker_logs_as_the_command_line_says(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    nats = NatsConfig(url=nats_server.url)
    user = ApiUser(name=USER, password=PASSWORD)
    async with processes(tmp_path) as procs:
        api = procs.start("api", "api", api_config(nats, [user], workers=2), "--log-format", "json")
        await wait_ready(api)
        async with asyncio.timeout(PATIENCE):
            while api.log().count("connected to NATS") < 2:  # one line from each process
                assert api.alive, api.log()
                await asyncio.sleep(0.05)
        lines = [line for line in api.log().splitlines() if line.strip()]
        for line in lines:
            entry = json.loads(line)  # raises on a line that is not one JSON object
            assert {"time", "level", "logger", "msg"} <= set(entry), line
