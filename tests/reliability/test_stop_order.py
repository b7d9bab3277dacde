"""Services stop cleanly in any order: told to stop while NATS is unreachable, or after it.

`smsgate agent` and `smsgate callback` as their command lines start them. A SIGTERM must end
each with exit code 0 and no traceback, whether NATS was never there or went away first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from smsgate.config import (
    AgentConfig,
    AgentPort,
    CallbackConfig,
    Config,
    HistoryConfig,
    NatsConfig,
    SimConfig,
)
from smsgate.embedded import EmbeddedNats, free_port
from smsgate_sim.simulator import Simulator

from tests.reliability.procs import Processes, Service

PATIENCE = 60.0


def configs(nats: NatsConfig, ports: dict[str, str], workdir: Path) -> dict[str, Config]:
    receiver = f"http://127.0.0.1:{free_port()}/in"  # no event is ever sent to it
    agent = AgentConfig(
        name="stop-order",
        heartbeat=0.5,
        ports=[AgentPort(name=name, device=device) for name, device in ports.items()],
    )
    return {
        "agent": Config(nats=nats, agent=agent),
        "callback": Config(nats=nats, callback=CallbackConfig(url=receiver)),
        "history-store": Config(
            nats=nats, history=HistoryConfig(url=f"sqlite:///{workdir / 'history.db'}")
        ),
    }


@pytest.fixture
async def modems() -> AsyncIterator[dict[str, str]]:
    """One virtual modem for the agent: its final port state is what it still has to say."""
    async with Simulator(SimConfig(ports=1, prefix="so-", control="")) as sim:
        yield sim.devices


async def log_shows(service: Service, text: str) -> None:
    async with asyncio.timeout(PATIENCE):
        while text not in service.log():
            assert service.alive, service.log()
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["agent", "callback", "history-store"])
async def test_sigterm_while_nats_is_unreachable(
    kind: str, procs: Processes, modems: dict[str, str], tmp_path: Path
) -> None:
    nowhere = NatsConfig(url=f"nats://127.0.0.1:{free_port()}")
    service = procs.start(kind, kind, configs(nowhere, modems, tmp_path)[kind])
    await log_shows(service, "nats error")  # it is trying, and failing, to connect
    assert await service.terminate(PATIENCE) == 0, service.log()
    assert "Traceback" not in service.log()


@pytest.mark.parametrize("wait", [False, True], ids=["at-once", "after-reconnects"])
@pytest.mark.parametrize("kind", ["agent", "callback", "history-store"])
async def test_sigterm_after_nats_is_gone(
    kind: str,
    wait: bool,
    server: EmbeddedNats,
    procs: Processes,
    modems: dict[str, str],
    tmp_path: Path,
) -> None:
    config = configs(NatsConfig(url=server.url), modems, tmp_path)[kind]
    service = procs.start(kind, kind, config)
    ready = {"agent": "serving 1 ports", "callback": "webhook gateway"}.get(kind, "history store:")
    await log_shows(service, ready)
    server.stop()
    if wait:
        await log_shows(service, "nats disconnected")
        await log_shows(service, "nats error")  # a reconnect attempt failed too
    assert await service.terminate(PATIENCE) == 0, service.log()
    assert "Traceback" not in service.log(), service.log()
