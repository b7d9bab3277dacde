"""A small farm for tests: a simulator, agents (in-process or as processes), and a tap on events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import PubAck
from nats.js.errors import KeyNotFoundError
from smsgate import contracts, subjects
from smsgate.config import AgentConfig, AgentPort, Config, NatsConfig, SendPolicy
from smsgate_agent.agent import Agent, run_agent
from smsgate_sim.simulator import Simulator

from tests.conftest import Bus

FAST = SendPolicy(min_interval=0.0, jitter=0.0)


def agent_config(
    nats: NatsConfig,
    name: str,
    devices: dict[str, str],
    *,
    policy: SendPolicy = FAST,
    **agent: object,
) -> Config:
    ports = [AgentPort(name=port, device=device) for port, device in sorted(devices.items())]
    settings: dict[str, object] = {
        "heartbeat": 0.5,
        "ack_wait": 3.0,
        "state_dir": str(_state_dir(name)),
        **agent,
    }
    base = AgentConfig(name=name, ports=ports, policy=policy)
    return Config(nats=nats, agent=msgspec.structs.replace(base, **settings))


_configs = itertools.count()


def _state_dir(agent: str) -> Path:
    """A spool directory of this test agent's own (made only if it spools something)."""
    return Path(tempfile.gettempdir()) / f"smsgate-test-{os.getpid()}-{next(_configs)}-{agent}"


@contextlib.asynccontextmanager
async def agent_running(config: Config, *, agent: Agent | None = None) -> AsyncIterator[None]:
    """`run_agent(config)` as a task, or `agent.run` when a test wants the Agent at hand."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(config, stop) if agent is None else agent.run(stop))
    try:
        yield
    finally:
        stop.set()
        done, _ = await asyncio.wait([task], timeout=60)
        if not done:
            for t in asyncio.all_tasks():
                t.print_stack(limit=8)
            raise AssertionError("agent did not stop")


@dataclass
class AgentProcess:
    """`smsgate agent` in its own process, so a test can SIGKILL it."""

    config: Config
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        path = self.workdir / f"{self.config.agent.name}.toml"
        path.write_bytes(msgspec.toml.encode(_without_none(msgspec.to_builtins(self.config))))
        with (self.workdir / f"{self.config.agent.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smsgate_cli", "agent", "--config", str(path)],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def _without_none(value: object) -> object:
    """TOML has no null: leave unset keys out, as a person writing the file would."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


@dataclass
class EventTap:
    """Every event published on the bus, decoded, as it happens."""

    results: dict[str, list[contracts.SendResult]] = field(default_factory=dict)
    reports: list[contracts.DeliveryReport] = field(default_factory=list)
    inbound: list[contracts.InboundSms] = field(default_factory=list)
    ports: list[contracts.PortEvent] = field(default_factory=list)
    _sub: Subscription | None = None

    async def start(self, nc: Client) -> None:
        async def on_event(msg: Msg) -> None:
            try:
                subjects.parse_event_subject(msg.subject)
            except ValueError:
                return  # the history's journal (queued, sending): not an event kind
            event = contracts.decode_event(msg.data)
            if isinstance(event, contracts.SendResult):
                self.results.setdefault(event.id, []).append(event)
            elif isinstance(event, contracts.DeliveryReport):
                self.reports.append(event)
            elif isinstance(event, contracts.InboundSms):
                self.inbound.append(event)
            else:
                self.ports.append(event)

        self._sub = await nc.subscribe(subjects.EVENTS_WILDCARD, cb=on_event)

    def finished(self, ids: Iterable[str]) -> bool:
        return all(i in self.results for i in ids)

    def by_port(self) -> Counter[str]:
        return Counter(r[0].port for r in self.results.values())


async def publish_jobs(
    nc: Client, jobs: Iterable[contracts.SendJob], *, concurrency: int = 200
) -> list[str]:
    """Queue jobs the way the API does (Nats-Msg-Id = message id)."""
    js = nc.jetstream()
    ids: list[str] = []
    pending: list[asyncio.Future[PubAck]] = []
    for job in jobs:
        subject = subjects.send_port(job.port) if job.port else subjects.SEND_ANY
        ack = await js.publish_async(
            subject, contracts.encode(job), headers={"Nats-Msg-Id": job.id}
        )
        pending.append(ack)
        ids.append(job.id)
        if len(pending) >= concurrency:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return ids


def job(
    to: str, text: str = "hello", *, port: str | None = None, status_report: bool = True
) -> contracts.SendJob:
    return contracts.SendJob(
        id=contracts.new_id(),
        to=to,
        text=text,
        port=port,
        status_report=status_report,
        created=contracts.utcnow(),
    )


async def until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    try:
        async with asyncio.timeout(limit):
            while not condition():  # noqa: ASYNC110 - polling plain state
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def start_sim(**settings: object) -> Simulator:
    from smsgate.config import SimConfig

    base: dict[str, object] = {
        "part_time": (0.01, 0.02),
        "report_delay": (0.02, 0.05),
        "delivery_delay": (0.01, 0.02),
        "control": "",
    }
    sim = Simulator(msgspec.convert({**base, **settings}, SimConfig))
    await sim.start()
    return sim


async def stored_state(
    bus: Bus, port: str, done: Callable[[contracts.PortState], bool]
) -> contracts.PortState:
    """The port's state in the KV, once `done` holds for it (heartbeats rewrite it)."""
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(KeyNotFoundError):
                entry = await bus.buckets.ports.get(port)
                state = contracts.decode(entry.value or b"", contracts.PortState)
                if done(state):
                    return state
            await asyncio.sleep(0.05)
